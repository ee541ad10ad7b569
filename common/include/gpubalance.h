/*
 * gpubalance.h - the one public header of libgpubalance.
 *
 * libgpubalance places each video encode on the right encoder of the host:
 * NVENC on one of several NVIDIA GPUs, VA-API on one of several render
 * nodes, or the CPU. Every process on the host that uses the library shares
 * one ledger of encode sessions, so placement accounts for all of them.
 *
 * Typical use by a front end (an encoder element, a wrapper codec):
 *
 *     gpubalance_context *ctx;
 *     gpubalance_stream *stream;
 *     gpubalance_lease *lease;
 *
 *     if (gpubalance_context_open(NULL, &ctx) < 0)
 *         die(gpubalance_last_error());
 *     gpubalance_stream_new(&stream);
 *     gpubalance_stream_set_codec(stream, GPUBALANCE_CODEC_H264);
 *     gpubalance_stream_set_size(stream, 1920, 1080);
 *     gpubalance_stream_set_fps(stream, 30.0);
 *     if (gpubalance_lease_acquire(ctx, stream, &lease) < 0)
 *         die(gpubalance_last_error());
 *     for (;;) {
 *         // open gpubalance_lease_ffmpeg_encoder(lease) on
 *         // gpubalance_lease_cuda_ordinal(lease) / _render_node(lease)
 *         if (gpubalance_lease_check_open(lease) == 0 && open_ok) {
 *             gpubalance_lease_mark_opened(lease);
 *             break;
 *         }
 *         if (gpubalance_lease_report_failure(&lease,
 *                 GPUBALANCE_FAILURE_CAPACITY, "out of memory (10)") < 0)
 *             die(gpubalance_last_error());  // every candidate failed
 *     }
 *     ... encode ...
 *     gpubalance_lease_release(lease);
 *     gpubalance_stream_free(stream);
 *     gpubalance_context_close(ctx);
 *
 * Conventions:
 * - Every type is opaque except the read-only records of a snapshot.
 * - Functions that can fail return 0 or a positive value on success and a
 *   negative gpubalance_status on failure. gpubalance_strerror() names the
 *   code; gpubalance_last_error() gives the full sentence for the calling
 *   thread's last failure (which file, which key, which device, and why).
 * - All functions are safe to call from many threads at once, on one
 *   context or several. A single lease or stream must not be used by two
 *   threads at the same time.
 * - A lease is held by the kernel as a lock on an open file description: it
 *   ends when released, when the process exits, or when it is killed.
 */
#ifndef GPUBALANCE_H
#define GPUBALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPUBALANCE_VERSION_MAJOR 0
#define GPUBALANCE_VERSION_MINOR 1
#define GPUBALANCE_VERSION_MICRO 0

/** Status codes. Success is 0; every failure is negative. */
typedef enum {
    GPUBALANCE_OK = 0,
    /** A bad argument or value (an unknown codec, policy, size...). */
    GPUBALANCE_ERR_INVALID_ARGUMENT = -1,
    /** Out of memory. */
    GPUBALANCE_ERR_NO_MEMORY = -2,
    /** The configuration file is missing, unreadable or invalid. */
    GPUBALANCE_ERR_CONFIG = -3,
    /** The ledger directory or file cannot be created, opened or locked. */
    GPUBALANCE_ERR_LEDGER_IO = -4,
    /** The ledger file is damaged, truncated or not a ledger at all. */
    GPUBALANCE_ERR_LEDGER_DAMAGED = -5,
    /** The ledger was written by a newer gpubalance with another format. */
    GPUBALANCE_ERR_LEDGER_NEWER = -6,
    /** The ledger directory or file is a symlink, foreign-owned or
     *  writable by others: refusing to trust it. */
    GPUBALANCE_ERR_LEDGER_UNSAFE = -7,
    /** Every device that could take the stream is full (when-full=fail). */
    GPUBALANCE_ERR_FULL = -8,
    /** when-full=wait and no device freed up before the timeout. */
    GPUBALANCE_ERR_TIMEOUT = -9,
    /** Every candidate was tried and reported as failed. */
    GPUBALANCE_ERR_NO_CANDIDATE = -10,
    /** No device, software included, can encode this codec, size or depth. */
    GPUBALANCE_ERR_UNSUPPORTED = -11,
    /** The forced device id does not exist on this host. */
    GPUBALANCE_ERR_NO_SUCH_DEVICE = -12,
    /** The device refused to open a session (a sim device past its
     *  enforce-sessions, as a driver past its cap would). */
    GPUBALANCE_ERR_REFUSED = -13,
    /** The call does not fit the lease's state (marking a released lease). */
    GPUBALANCE_ERR_BAD_STATE = -14,
    /** Reset refused: live leases exist in the ledger. */
    GPUBALANCE_ERR_BUSY = -15,
} gpubalance_status;

typedef enum {
    GPUBALANCE_CODEC_H264 = 0,
    GPUBALANCE_CODEC_HEVC = 1,
    GPUBALANCE_CODEC_AV1 = 2,
} gpubalance_codec;
#define GPUBALANCE_N_CODECS 3

typedef enum {
    GPUBALANCE_BACKEND_NVENC = 0,
    GPUBALANCE_BACKEND_VAAPI = 1,
    GPUBALANCE_BACKEND_SOFTWARE = 2,
    /** A simulated device: accounted like hardware, encoded in software. */
    GPUBALANCE_BACKEND_SIM = 3,
} gpubalance_backend;
#define GPUBALANCE_N_BACKENDS 4

typedef enum {
    /** Spread: lowest projected utilisation after adding the stream. */
    GPUBALANCE_POLICY_BALANCED = 0,
    /** Priority: fill devices in order before using the next. */
    GPUBALANCE_POLICY_FILL = 1,
} gpubalance_policy;

typedef enum {
    /** Place the stream on the software encoder. */
    GPUBALANCE_WHEN_FULL_SOFTWARE = 0,
    /** Block until a lease frees, up to the wait timeout. */
    GPUBALANCE_WHEN_FULL_WAIT = 1,
    /** Fail with GPUBALANCE_ERR_FULL. */
    GPUBALANCE_WHEN_FULL_FAIL = 2,
} gpubalance_when_full;

typedef enum {
    /** Granted by the core; the encoder is not open yet. */
    GPUBALANCE_LEASE_GRANTED = 0,
    /** The front end opened the encoder. */
    GPUBALANCE_LEASE_OPENED = 1,
    /** The open failed; the lease is on its way out. */
    GPUBALANCE_LEASE_FAILED = 2,
} gpubalance_lease_state;

/** Why an encoder open failed, as the front end reports it. */
typedef enum {
    /** The device refused for capacity (NVENC error 10, VA context
     *  creation failure). The session count at which it failed becomes the
     *  device's (or its pool's) learned limit, shared with every process. */
    GPUBALANCE_FAILURE_CAPACITY = 0,
    /** The encoder is not usable from this process (element or library
     *  missing, device vanished). This context stops offering the device
     *  until the learn expiry passes. */
    GPUBALANCE_FAILURE_UNAVAILABLE = 1,
    /** Anything else (bad parameters for this encoder): the device is
     *  skipped for this stream only. */
    GPUBALANCE_FAILURE_OTHER = 2,
} gpubalance_failure;

typedef enum {
    GPUBALANCE_LOG_ERROR = 0,
    GPUBALANCE_LOG_WARNING = 1,
    GPUBALANCE_LOG_INFO = 2,
    GPUBALANCE_LOG_DEBUG = 3,
} gpubalance_log_level;

typedef struct gpubalance_context gpubalance_context;
typedef struct gpubalance_stream gpubalance_stream;
typedef struct gpubalance_lease gpubalance_lease;
typedef struct gpubalance_snapshot gpubalance_snapshot;

/* ---- limits ----------------------------------------------------------- */

/** Smallest and largest width or height of a stream, in pixels. */
#define GPUBALANCE_MIN_DIMENSION 16
#define GPUBALANCE_MAX_DIMENSION 16384
/** Largest frame rate a stream may declare (0 means unknown). */
#define GPUBALANCE_MAX_FPS 1000
/** Bytes kept of a stream's label. */
#define GPUBALANCE_MAX_LABEL 63
/** The constant-quality scale both front ends document: x264's CRF,
 *  0 (best) .. 51 (worst). See gpubalance_quality_value(). */
#define GPUBALANCE_MAX_QUALITY 51

/* ---- errors, names, logging ------------------------------------------ */

/** A short sentence for a status code ("ledger file is damaged"). */
const char *gpubalance_strerror(int status);

/** The full message of the calling thread's last failure, naming what was
 *  wrong; "" when there was none. Valid until the thread's next call. */
const char *gpubalance_last_error(void);

/** "h264", "hevc", "av1"; NULL for a value out of range. */
const char *gpubalance_codec_name(gpubalance_codec codec);
/** Parses "h264" / "hevc" ("h265" too) / "av1". Returns the codec or
 *  GPUBALANCE_ERR_INVALID_ARGUMENT. */
int gpubalance_codec_from_name(const char *name);
/** "nvenc", "vaapi", "software", "sim". */
const char *gpubalance_backend_name(gpubalance_backend backend);
/** "balanced", "fill". */
const char *gpubalance_policy_name(gpubalance_policy policy);
/** "software", "wait", "fail". */
const char *gpubalance_when_full_name(gpubalance_when_full when_full);
/** "granted", "opened", "failed". */
const char *gpubalance_lease_state_name(gpubalance_lease_state state);

typedef void (*gpubalance_log_func)(gpubalance_log_level level, const char *message, void *user_data);

/** Routes the library's log lines (default: stderr, filtered by
 *  GPUBALANCE_LOG = error|warning|info|debug, default warning) to func,
 *  which receives every line at or below the GPUBALANCE_LOG level. NULL
 *  restores stderr. Process-wide. */
void gpubalance_set_log_handler(gpubalance_log_func func, void *user_data);

/* ---- context ---------------------------------------------------------- */

/**
 * Opens a context: reads the configuration, opens (or creates) the ledger
 * and builds the device inventory.
 *
 * @config_path: a GKeyFile config file, or NULL for $GPUBALANCE_CONFIG,
 *   then /etc/gpubalance.conf, then ~/.config/gpubalance.conf (the first
 *   that exists), then built-in defaults.
 * The ledger lives in $GPUBALANCE_DIR (default /dev/shm/gpubalance-UID).
 *
 * Returns 0 and sets *out, or GPUBALANCE_ERR_CONFIG / _LEDGER_* with the
 * details in gpubalance_last_error().
 */
int gpubalance_context_open(const char *config_path, gpubalance_context **out);

/** Flags for gpubalance_context_open_with_flags(). */
typedef enum {
    /** Probe the hardware again instead of trusting the ledger's cache. */
    GPUBALANCE_OPEN_REFRESH_PROBES = 1u << 0,
} gpubalance_open_flags;

/** gpubalance_context_open() with gpubalance_open_flags. */
int gpubalance_context_open_with_flags(const char *config_path, unsigned flags, gpubalance_context **out);

/** What discovery found, or why it found nothing, one line each
 *  ("nvenc: no NVIDIA devices: libnvidia-ml.so.1 not found"). */
size_t gpubalance_context_n_notes(const gpubalance_context *ctx);
const char *gpubalance_context_note(const gpubalance_context *ctx, size_t index);

/** Drops the caller's reference; the context lives on while leases taken
 *  from it are alive. NULL is allowed. */
void gpubalance_context_close(gpubalance_context *ctx);

/** The ledger file's path (for messages). */
const char *gpubalance_context_ledger_path(const gpubalance_context *ctx);

/** The configuration file that was read, or NULL for built-in defaults. */
const char *gpubalance_context_config_path(const gpubalance_context *ctx);

/**
 * The process's shared context: opened on the first call with the default
 * configuration (as gpubalance_context_open(NULL, ...)), then the same one
 * for every caller, so that a process running many encoders discovers the
 * hardware once. Closed when the process exits (nothing is left for a leak
 * checker). Thread-safe. Returns NULL when opening failed, with the reason
 * in gpubalance_last_error(); a later call tries again. The caller does not
 * close it.
 */
gpubalance_context *gpubalance_context_shared(void);

/* ---- stream description ----------------------------------------------- */

/** A new stream description: h264, 1920x1080, unknown fps (counted as
 *  30), 8-bit, no label, the context's policy, order and when-full. */
int gpubalance_stream_new(gpubalance_stream **out);
void gpubalance_stream_free(gpubalance_stream *stream);

int gpubalance_stream_set_codec(gpubalance_stream *stream, gpubalance_codec codec);
/** Width and height in pixels, GPUBALANCE_MIN_DIMENSION ..
 *  GPUBALANCE_MAX_DIMENSION each. */
int gpubalance_stream_set_size(gpubalance_stream *stream, int width, int height);
/** Frames per second, 0 for unknown (counted as 30), at most
 *  GPUBALANCE_MAX_FPS. */
int gpubalance_stream_set_fps(gpubalance_stream *stream, double fps);
/** 8 or 10. */
int gpubalance_stream_set_bit_depth(gpubalance_stream *stream, int bit_depth);
/** Free text shown in `gpubalance status` (truncated to
 *  GPUBALANCE_MAX_LABEL bytes). */
int gpubalance_stream_set_label(gpubalance_stream *stream, const char *label);
/** "balanced" or "fill"; NULL: the context's. */
int gpubalance_stream_set_policy(gpubalance_stream *stream, const char *name);
/** A comma-separated backend order such as "nvenc,vaapi,software";
 *  NULL: the context's. */
int gpubalance_stream_set_order(gpubalance_stream *stream, const char *order);
/** "software", "wait" or "fail"; NULL: the context's. */
int gpubalance_stream_set_when_full(gpubalance_stream *stream, const char *name);
/** Seconds that when-full=wait blocks; negative: the context's. */
int gpubalance_stream_set_wait_timeout(gpubalance_stream *stream, double seconds);
/** Force one device id ("nvenc:1", "sim:gpu0", "software"); NULL: any.
 *  The id is checked at acquire time against the inventory. */
int gpubalance_stream_set_device(gpubalance_stream *stream, const char *id);

/** The stream's cost: width x height x fps / (1920 x 1080 x 30). */
double gpubalance_stream_cost(const gpubalance_stream *stream);

/* ---- leases ----------------------------------------------------------- */

/**
 * Chooses a device for the stream and takes a lease on it. The stream may
 * be freed afterwards (the lease keeps a copy).
 *
 * Returns 0 and sets *out; GPUBALANCE_ERR_FULL, _TIMEOUT, _UNSUPPORTED,
 * _NO_SUCH_DEVICE or a ledger error otherwise.
 */
int gpubalance_lease_acquire(gpubalance_context *ctx, const gpubalance_stream *stream, gpubalance_lease **out);

/** "nvenc:0", "vaapi:renderD128", "software", "sim:gpu0". */
const char *gpubalance_lease_device(const gpubalance_lease *lease);
gpubalance_backend gpubalance_lease_backend(const gpubalance_lease *lease);
/** The CUDA ordinal of an nvenc lease (as this process sees CUDA
 *  devices), -1 otherwise. */
int gpubalance_lease_cuda_ordinal(const gpubalance_lease *lease);
/** The GPU UUID ("GPU-...") of an nvenc lease when known, NULL otherwise. */
const char *gpubalance_lease_gpu_uuid(const gpubalance_lease *lease);
/** The render node path of a vaapi lease, NULL otherwise. */
const char *gpubalance_lease_render_node(const gpubalance_lease *lease);
/** The FFmpeg encoder to open: "h264_nvenc", "hevc_vaapi", "libx264"... */
const char *gpubalance_lease_ffmpeg_encoder(const gpubalance_lease *lease);
/** The GStreamer 1.22 element the lease calls for: "nvcudah264enc",
 *  "vah264enc", "x264enc"... Element names differ between GStreamer
 *  releases, so a front end should treat this as a hint and find the
 *  factory by its properties. */
const char *gpubalance_lease_gst_encoder(const gpubalance_lease *lease);
/** Why this device was chosen, one line. */
const char *gpubalance_lease_reason(const gpubalance_lease *lease);
/** 1 for the first placement, 2 after one reported failure... */
int gpubalance_lease_attempt(const gpubalance_lease *lease);
gpubalance_lease_state gpubalance_lease_state_get(const gpubalance_lease *lease);

/**
 * Call just before opening the encoder. Real devices always answer 0 (only
 * the open itself tells the truth). A sim device answers as the driver it
 * stands in for would: GPUBALANCE_ERR_REFUSED once enforce-sessions of its
 * sessions are open; the front end then treats the open as failed.
 */
int gpubalance_lease_check_open(gpubalance_lease *lease);

/** The encoder opened: the lease moves to "opened". */
int gpubalance_lease_mark_opened(gpubalance_lease *lease);

/**
 * Reports that opening the encoder failed on the lease's device, learns
 * from it (see gpubalance_failure), releases the lease and takes one on the
 * next candidate, skipping every device already tried for this stream.
 *
 * On success *lease is the new lease (attempt + 1). On failure *lease is
 * freed and set to NULL, and gpubalance_last_error() lists every attempt
 * and why it failed.
 */
int gpubalance_lease_report_failure(gpubalance_lease **lease, gpubalance_failure kind, const char *reason);

/** Ends the lease and frees it. NULL is allowed. */
void gpubalance_lease_release(gpubalance_lease *lease);

/**
 * Lets the lease survive exec(): the lock's file descriptor loses
 * FD_CLOEXEC and the lease is marked opened. The lease then ends when the
 * executed program exits (or is killed). Meant for `gpubalance exec`. The
 * lease object must still be freed (gpubalance_lease_release()) if exec
 * is not called after all. Returns the file descriptor, or an error.
 */
int gpubalance_lease_keep_across_exec(gpubalance_lease *lease);

/**
 * Tells the core which encoder the front end opens for this lease
 * ("x264enc", "h264_nvenc"): it names the attempt in the attempts list.
 * Default: the first FFmpeg encoder of gpubalance_encoders().
 */
int gpubalance_lease_set_encoder(gpubalance_lease *lease, const char *name);

/**
 * The attempts that failed so far for this stream, "sim:gpu0 (x264enc):
 * why; software (x264enc): why", "" before the first. When
 * gpubalance_lease_report_failure() runs out of candidates,
 * gpubalance_last_error() holds "every candidate failed: " and this list:
 * front ends print that message, once, and keep no list of their own.
 */
const char *gpubalance_lease_attempts(const gpubalance_lease *lease);

/* ---- encoders: what both front ends need to know ----------------------- */

typedef enum {
    GPUBALANCE_FRAMEWORK_FFMPEG = 0,
    GPUBALANCE_FRAMEWORK_GSTREAMER = 1,
} gpubalance_framework;

/** Encoders that share the meaning of their options. */
typedef enum {
    GPUBALANCE_ENCODER_X264 = 0, /**< libx264, x264enc */
    GPUBALANCE_ENCODER_X265,     /**< libx265, x265enc */
    GPUBALANCE_ENCODER_OPENH264, /**< openh264enc */
    GPUBALANCE_ENCODER_SVTAV1,   /**< libsvtav1, svtav1enc */
    GPUBALANCE_ENCODER_AOM,      /**< libaom-av1, av1enc */
    GPUBALANCE_ENCODER_NVENC,    /**< h264_nvenc..., GStreamer nvcodec */
    GPUBALANCE_ENCODER_VAAPI,    /**< h264_vaapi..., GStreamer va */
} gpubalance_encoder_family;
#define GPUBALANCE_N_ENCODER_FAMILIES 7

typedef struct {
    const char *name; /**< "libx264", "x264enc", "h264_nvenc" */
    gpubalance_encoder_family family;
} gpubalance_encoder_info;

/**
 * The encoders a front end may open for codec on backend, most preferred
 * first; *n_out gets their number (0 and NULL: none). sim answers as
 * software. GStreamer names its hardware elements per release and device,
 * so for nvenc and vaapi the GStreamer names are hints: an element finds
 * its factory by property (cuda-device-id, device-path).
 *
 *   FFmpeg     nvenc h264_nvenc hevc_nvenc av1_nvenc; vaapi h264_vaapi...;
 *              software libx264, libx265, libsvtav1 then libaom-av1
 *   GStreamer  nvenc nvcudah264enc...; vaapi vah264enc...; software
 *              x264enc then openh264enc, x265enc, svtav1enc then av1enc
 */
const gpubalance_encoder_info *gpubalance_encoders(gpubalance_framework framework, gpubalance_backend backend,
                                                   gpubalance_codec codec, size_t *n_out);

/** The family of an encoder by its FFmpeg or GStreamer name, or -1. */
int gpubalance_encoder_family_of(const char *encoder_name);

/** Preset names as x264 spells them, fastest first: ultrafast superfast
 *  veryfast faster fast medium slow slower veryslow; NULL past the last. */
const char *gpubalance_preset_name(size_t index);

/**
 * The value a family's own preset setting takes for a preset named as x264
 * names it, as text (for av_opt_set, gst_util_set_object_arg):
 *
 *   preset     x264/x265  NVENC  VA-API level  SVT-AV1  aom cpu-used  openh264
 *   ultrafast  ultrafast  p1     7             12       8             low
 *   superfast  superfast  p1     7             11       7             low
 *   veryfast   veryfast   p2     6             10       6             low
 *   faster     faster     p3     5             9        5             low
 *   fast       fast       p3     5             8        5             medium
 *   medium     medium     p4     4             7        4             medium
 *   slow       slow       p5     3             6        3             high
 *   slower     slower     p6     2             5        2             high
 *   veryslow   veryslow   p7     1             4        1             high
 *
 * (VA-API's level is GStreamer's target-usage and FFmpeg's
 * compression_level, 1 = best quality.) NULL for an unknown preset name.
 */
const char *gpubalance_preset_value(gpubalance_encoder_family family, const char *preset);

/**
 * A constant-quality value on x264's CRF scale (0 best .. 51 worst) as the
 * family's own constant-quality setting: x264/x265 crf and openh264 QP
 * unchanged, NVENC cq and VA-API ICQ/QP 1..51 (their 0 means "automatic"),
 * SVT-AV1 and aom crf 0..63 (scaled by 63/51).
 */
double gpubalance_quality_value(gpubalance_encoder_family family, double crf);

/**
 * Classifies an encoder's failure to open: the one rule every front end
 * uses. error_number: a positive errno value the framework gave (ENOMEM,
 * ENOENT...) or 0; message: the text it logged, or NULL.
 *
 * - CAPACITY: NVENC past its session cap ("out of memory (10)",
 *   NV_ENC_ERR_OUT_OF_MEMORY, ENOMEM from nvenc), VA-API context or
 *   surface allocation refused, a sim device's refusal;
 * - UNAVAILABLE: the encoder or device is missing in this process
 *   ("unsupported device (2)", "No capable devices found", "no such
 *   element", "not found", ENOENT, ENODEV, ENOSYS, ENXIO);
 * - OTHER: anything else (parameters this encoder does not take).
 */
gpubalance_failure gpubalance_failure_classify(gpubalance_backend backend, int error_number, const char *message);

/**
 * Classifies the failure of this lease's encoder to open: as
 * gpubalance_failure_classify(), and where the message does not carry the
 * driver's own verdict on an NVENC device, asks the driver. GStreamer's
 * nvcodec reports a refused session only as "Could not initialize
 * supporting library", and registers no element for a GPU that was full
 * when it loaded; then one NVENC session is opened (and closed) on the
 * lease's GPU, in place of the one that failed: NV_ENC_ERR_OUT_OF_MEMORY
 * there makes it CAPACITY (the cap is learned), no encoder UNAVAILABLE; an
 * open that succeeds leaves the message's classification. The FFmpeg
 * wrapper's "out of memory (10)" needs no such question.
 *
 * detail (may be NULL) gets what the driver answered when it was asked,
 * else "": add it to the reason given to gpubalance_lease_report_failure().
 */
gpubalance_failure gpubalance_lease_classify_failure(const gpubalance_lease *lease, int error_number,
                                                     const char *message, char *detail, size_t detail_size);

/* ---- snapshot --------------------------------------------------------- */

/** A device as the snapshot saw it. Strings live as long as the snapshot. */
typedef struct {
    const char *id;   /**< "nvenc:0", "sim:gpu0", "software" */
    const char *name; /**< human name ("NVIDIA H100", "sim gpu0") */
    gpubalance_backend backend;
    /** The backend this device stands for in `order` (sim: imitates). */
    gpubalance_backend order_backend;
    unsigned codecs;         /**< bit (1 << gpubalance_codec) per codec */
    int sessions;            /**< leases held through gpubalance */
    int foreign_sessions;    /**< sessions gpubalance did not grant */
    int max_sessions;        /**< configured limit, 0 = none */
    int learned_limit;       /**< learned limit in force, -1 = none */
    int enforce_sessions;    /**< sim only: refuses past this, 0 = never */
    double load;             /**< sum of the costs of its leases */
    double budget;           /**< cost units, 0 = no limit */
    const char *pool;        /**< pool name or NULL */
    int cuda_ordinal;        /**< nvenc: CUDA ordinal, else -1 */
    const char *gpu_uuid;    /**< nvenc: "GPU-..." or NULL */
    const char *render_node; /**< vaapi: "/dev/dri/renderD128" or NULL */
    bool declared;           /**< from the config file rather than discovery */
    /** Present but never offered (a GPU without NVENC, a render node
     *  without an encode entrypoint): why; NULL when offered. */
    const char *not_offered_why;
    const char *pci_bus_id; /**< nvenc: PCI address, else NULL */
    const char *driver;     /**< driver name (and version), or NULL */
} gpubalance_device_info;

typedef struct {
    const char *name;
    int sessions;      /**< ours and foreign, on all member devices */
    int max_sessions;  /**< configured, 0 = none */
    int learned_limit; /**< -1 = none */
} gpubalance_pool_info;

typedef struct {
    const char *device;
    pid_t pid;              /**< as seen in the holder's pid namespace */
    uint64_t pid_namespace; /**< inode of the holder's pid namespace */
    gpubalance_codec codec;
    int width;
    int height;
    double fps; /**< 0 = unknown */
    double cost;
    gpubalance_lease_state state;
    const char *label;
    int64_t since_unix_ms; /**< when the lease was granted */
    int slot;              /**< the ledger slot (diagnostics) */
} gpubalance_lease_info;

/** A consistent view of devices, pools and live leases. Verifies every
 *  lease against its lock first, so leases of dead processes never show. */
int gpubalance_snapshot_take(gpubalance_context *ctx, gpubalance_snapshot **out);
void gpubalance_snapshot_free(gpubalance_snapshot *snap);
size_t gpubalance_snapshot_n_devices(const gpubalance_snapshot *snap);
const gpubalance_device_info *gpubalance_snapshot_device(const gpubalance_snapshot *snap, size_t index);
size_t gpubalance_snapshot_n_pools(const gpubalance_snapshot *snap);
const gpubalance_pool_info *gpubalance_snapshot_pool(const gpubalance_snapshot *snap, size_t index);
size_t gpubalance_snapshot_n_leases(const gpubalance_snapshot *snap);
const gpubalance_lease_info *gpubalance_snapshot_lease(const gpubalance_snapshot *snap, size_t index);

/* ---- operations: counters, the event log, change notification -------- */

/** Counters kept beside the ledger (in its directory), shared by every
 *  process of the host and surviving them; they start over when the
 *  ledger is reset. Per device unless marked host-wide. */
typedef enum {
    /** Leases granted on the device (every attempt, fallbacks included). */
    GPUBALANCE_COUNTER_PLACEMENTS = 0,
    /** Leases placed on the software device by when-full=software. */
    GPUBALANCE_COUNTER_FALLBACKS = 1,
    /** Encoder opens reported failed, by gpubalance_failure kind. */
    GPUBALANCE_COUNTER_FAILURES_CAPACITY = 2,
    GPUBALANCE_COUNTER_FAILURES_UNAVAILABLE = 3,
    GPUBALANCE_COUNTER_FAILURES_OTHER = 4,
    /** Session limits learned from a capacity refusal on the device. */
    GPUBALANCE_COUNTER_LIMITS_LEARNED = 5,
    /** Leases whose holder ended without releasing them (found by a sweep). */
    GPUBALANCE_COUNTER_LEASES_EXPIRED = 6,
    /** Host-wide: acquires that blocked with when-full=wait. */
    GPUBALANCE_COUNTER_WAITS = 7,
    /** Host-wide: acquires refused, by status (FULL, TIMEOUT, UNSUPPORTED,
     *  NO_CANDIDATE). */
    GPUBALANCE_COUNTER_REFUSED_FULL = 8,
    GPUBALANCE_COUNTER_REFUSED_TIMEOUT = 9,
    GPUBALANCE_COUNTER_REFUSED_UNSUPPORTED = 10,
    GPUBALANCE_COUNTER_REFUSED_NO_CANDIDATE = 11,
} gpubalance_counter;
#define GPUBALANCE_N_COUNTERS 12

/** Pass as the device index to gpubalance_snapshot_counter() for the
 *  host-wide total (every device of the ledger, and host-wide counters). */
#define GPUBALANCE_HOST ((size_t)-1)

/** A counter's value when the snapshot was taken: for the device at index
 *  (as gpubalance_snapshot_device()), or GPUBALANCE_HOST. 0 when counters
 *  are unavailable (the counters file could not be opened; logged). */
uint64_t gpubalance_snapshot_counter(const gpubalance_snapshot *snap, size_t device, gpubalance_counter counter);

/** One line of the host's event log: a placement, refusal, learned limit,
 *  fallback, wait or expiry, as key=value pairs ("event=placed
 *  label=cam1 pid=42 device=sim:gpu0 attempt=1 reason=..."). */
typedef struct {
    uint64_t seq;    /**< increasing across the host, from 1 */
    int64_t unix_ms; /**< when it was logged */
    gpubalance_log_level level;
    const char *text; /**< valid during the callback only */
} gpubalance_event;

typedef void (*gpubalance_event_func)(const gpubalance_event *event, void *user_data);

/** Calls func, oldest first, for each event still kept in the host's
 *  bounded event log whose seq is above after. Returns the highest seq
 *  seen (or after). Each event is also a log line at info level through
 *  gpubalance_set_log_handler()'s handler, in the process it happened in. */
uint64_t gpubalance_events_read(gpubalance_context *ctx, uint64_t after, gpubalance_event_func func, void *user_data);

/** Notification of changes to the ledger: a lease granted, released or
 *  ended by its process's death, an event logged. While a watch exists,
 *  released leases close their descriptors (the change is seen by
 *  inotify), which makes acquires slightly dearer host-wide. */
typedef struct gpubalance_watch gpubalance_watch;
int gpubalance_watch_new(gpubalance_context *ctx, gpubalance_watch **out);
/** A descriptor that polls readable when something changed. */
int gpubalance_watch_fd(const gpubalance_watch *watch);
/** Consumes the notifications so far (call before taking a snapshot). */
void gpubalance_watch_drain(gpubalance_watch *watch);
void gpubalance_watch_free(gpubalance_watch *watch);

/* ---- maintenance ------------------------------------------------------ */

/**
 * Rebuilds the ledger in $GPUBALANCE_DIR. A damaged or foreign file is
 * moved aside (renamed *.damaged-TIME, nothing is deleted) and a fresh one
 * created. A valid ledger with live leases is left alone and
 * GPUBALANCE_ERR_BUSY returned unless force is true. Learned limits and
 * the probe cache start over.
 */
int gpubalance_ledger_reset(bool force);

#ifdef __cplusplus
}
#endif

#endif /* GPUBALANCE_H */
