/* util.c - errors, logging, clocks and names. */
#define _GNU_SOURCE
#include "util.h"

#include <glib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The last error is per thread, like errno: a GStreamer process runs many
 * encoders on many threads, and one thread's failure must not overwrite the
 * message another thread is about to print. */
static _Thread_local char last_error[2048];

/* Keeps a message that does not fit whole: its start, a marker, and its
 * end, where the reason and the way out are written. A 4000-character
 * path thus costs its middle, never the reason. Cuts fall on UTF-8
 * character boundaries. */
#define ELISION " [...] "
#define KEPT_HEAD 512

static size_t char_start(const char *text, size_t at)
{
    while (at > 0 && ((unsigned char)text[at] & 0xc0) == 0x80)
        at--;
    return at;
}

void gpb_store_message(char *buf, size_t size, const char *message)
{
    size_t len = strlen(message);
    size_t head, tail_from, tail_len;

    if (len < size) {
        memcpy(buf, message, len + 1);
        return;
    }
    head = char_start(message, KEPT_HEAD);
    tail_len = size - 1 - head - strlen(ELISION);
    tail_from = len - tail_len;
    while (tail_from < len && ((unsigned char)message[tail_from] & 0xc0) == 0x80)
        tail_from++;
    memcpy(buf, message, head);
    memcpy(buf + head, ELISION, strlen(ELISION));
    memcpy(buf + head + strlen(ELISION), message + tail_from, len - tail_from + 1);
}

int gpb_fail(int status, const char *fmt, ...)
{
    va_list ap;
    char *message;

    /* Formatted apart first: an argument may be the last error itself. */
    va_start(ap, fmt);
    message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    gpb_store_message(last_error, sizeof(last_error), message);
    g_free(message);
    gpb_debug("error: %s", last_error);
    return status;
}

void gpb_clear_error(void)
{
    last_error[0] = '\0';
}

const char *gpubalance_last_error(void)
{
    return last_error;
}

const char *gpubalance_strerror(int status)
{
    switch (status) {
    case GPUBALANCE_OK:
        return "success";
    case GPUBALANCE_ERR_INVALID_ARGUMENT:
        return "invalid argument";
    case GPUBALANCE_ERR_NO_MEMORY:
        return "out of memory";
    case GPUBALANCE_ERR_CONFIG:
        return "invalid configuration";
    case GPUBALANCE_ERR_LEDGER_IO:
        return "cannot open or lock the ledger";
    case GPUBALANCE_ERR_LEDGER_DAMAGED:
        return "ledger file is damaged";
    case GPUBALANCE_ERR_LEDGER_NEWER:
        return "ledger was written by a newer gpubalance";
    case GPUBALANCE_ERR_LEDGER_UNSAFE:
        return "ledger directory or file is unsafe";
    case GPUBALANCE_ERR_FULL:
        return "every suitable device is full";
    case GPUBALANCE_ERR_TIMEOUT:
        return "timed out waiting for a device";
    case GPUBALANCE_ERR_NO_CANDIDATE:
        return "every candidate device failed";
    case GPUBALANCE_ERR_UNSUPPORTED:
        return "no device supports this stream";
    case GPUBALANCE_ERR_NO_SUCH_DEVICE:
        return "no such device";
    case GPUBALANCE_ERR_REFUSED:
        return "the device refused the session";
    case GPUBALANCE_ERR_BAD_STATE:
        return "wrong lease state for this call";
    case GPUBALANCE_ERR_BUSY:
        return "live leases exist";
    default:
        return "unknown error";
    }
}

/* ---- logging ---------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static gpubalance_log_func log_func;
static void *log_user_data;
static int log_threshold = -1;

static int log_threshold_from_env(void)
{
    const char *env = g_getenv("GPUBALANCE_LOG");
    static const char *const names[] = {"error", "warning", "info", "debug"};

    if (!env || !*env)
        return GPUBALANCE_LOG_WARNING;
    for (int i = 0; i < (int)G_N_ELEMENTS(names); i++)
        if (g_ascii_strcasecmp(env, names[i]) == 0)
            return i;
    if (g_ascii_isdigit(env[0]))
        return CLAMP(atoi(env), 0, GPUBALANCE_LOG_DEBUG);
    fprintf(stderr, "gpubalance: GPUBALANCE_LOG=%s is not one of error, warning, info, debug; using warning\n", env);
    return GPUBALANCE_LOG_WARNING;
}

void gpubalance_set_log_handler(gpubalance_log_func func, void *user_data)
{
    pthread_mutex_lock(&log_lock);
    log_func = func;
    log_user_data = user_data;
    pthread_mutex_unlock(&log_lock);
}

void gpb_log(gpubalance_log_level level, const char *fmt, ...)
{
    static const char *const level_names[] = {"error", "warning", "info", "debug"};
    gpubalance_log_func func;
    void *user_data;
    char *message;
    va_list ap;

    pthread_mutex_lock(&log_lock);
    if (log_threshold < 0)
        log_threshold = log_threshold_from_env();
    func = log_func;
    user_data = log_user_data;
    pthread_mutex_unlock(&log_lock);
    if ((int)level > log_threshold)
        return;

    va_start(ap, fmt);
    message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (func)
        func(level, message, user_data);
    else
        fprintf(stderr, "gpubalance: %s: %s\n", level_names[level], message);
    g_free(message);
}

/* ---- clocks ------------------------------------------------------------ */

static gpb_clock_func clock_override;

uint64_t gpb_boottime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t gpb_unix_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gpb_set_clock(gpb_clock_func func)
{
    __atomic_store_n(&clock_override, func, __ATOMIC_RELEASE);
}

uint64_t gpb_now_ns(void)
{
    gpb_clock_func func = __atomic_load_n(&clock_override, __ATOMIC_ACQUIRE);

    return func ? func() : gpb_boottime_ns();
}

const char *gpb_boot_id(void)
{
    static char boot_id[40];
    static gsize done;

    if (g_once_init_enter(&done)) {
        gchar *text = NULL;

        if (g_file_get_contents("/proc/sys/kernel/random/boot_id", &text, NULL, NULL)) {
            g_strstrip(text);
            g_strlcpy(boot_id, text, sizeof(boot_id));
            g_free(text);
        }
        g_once_init_leave(&done, 1);
    }
    return boot_id;
}

/* ---- names ------------------------------------------------------------- */

static const char *const codec_names[GPUBALANCE_N_CODECS] = {"h264", "hevc", "av1"};
static const char *const backend_names[GPUBALANCE_N_BACKENDS] = {"nvenc", "vaapi", "software", "sim"};

const char *gpubalance_codec_name(gpubalance_codec codec)
{
    if ((unsigned)codec >= GPUBALANCE_N_CODECS)
        return NULL;
    return codec_names[codec];
}

int gpubalance_codec_from_name(const char *name)
{
    if (!name)
        return GPUBALANCE_ERR_INVALID_ARGUMENT;
    for (int i = 0; i < GPUBALANCE_N_CODECS; i++)
        if (g_ascii_strcasecmp(name, codec_names[i]) == 0)
            return i;
    if (g_ascii_strcasecmp(name, "h265") == 0)
        return GPUBALANCE_CODEC_HEVC;
    return GPUBALANCE_ERR_INVALID_ARGUMENT;
}

const char *gpubalance_backend_name(gpubalance_backend backend)
{
    if ((unsigned)backend >= GPUBALANCE_N_BACKENDS)
        return NULL;
    return backend_names[backend];
}

int gpb_backend_from_name(const char *name, gpubalance_backend *out)
{
    for (int i = 0; i < GPUBALANCE_N_BACKENDS; i++) {
        if (g_ascii_strcasecmp(name, backend_names[i]) == 0) {
            *out = (gpubalance_backend)i;
            return 0;
        }
    }
    return GPUBALANCE_ERR_INVALID_ARGUMENT;
}

const char *gpubalance_policy_name(gpubalance_policy policy)
{
    switch (policy) {
    case GPUBALANCE_POLICY_BALANCED:
        return "balanced";
    case GPUBALANCE_POLICY_FILL:
        return "fill";
    }
    return NULL;
}

const char *gpubalance_when_full_name(gpubalance_when_full when_full)
{
    switch (when_full) {
    case GPUBALANCE_WHEN_FULL_SOFTWARE:
        return "software";
    case GPUBALANCE_WHEN_FULL_WAIT:
        return "wait";
    case GPUBALANCE_WHEN_FULL_FAIL:
        return "fail";
    }
    return NULL;
}

const char *gpubalance_lease_state_name(gpubalance_lease_state state)
{
    switch (state) {
    case GPUBALANCE_LEASE_GRANTED:
        return "granted";
    case GPUBALANCE_LEASE_OPENED:
        return "opened";
    case GPUBALANCE_LEASE_FAILED:
        return "failed";
    }
    return NULL;
}
