/* util.c - errors, logging, clocks and names. */
#define _GNU_SOURCE
#include "util.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* A process cannot change its own pid namespace (unshare and setns only
 * move its future children), so one look per process suffices; a forked
 * child looks again, as it may be the first process of a new one. */
static pid_t self_pid; /* 0: not looked up in this process; written last */
static uint64_t self_namespace;
static pthread_once_t fork_hook_once = PTHREAD_ONCE_INIT;

static void forget_self(void)
{
    __atomic_store_n(&self_pid, 0, __ATOMIC_RELEASE);
}

static void install_fork_hook(void)
{
    pthread_atfork(NULL, NULL, forget_self);
}

static pid_t look_up_self(void)
{
    pid_t pid;
    struct stat st;

    pthread_once(&fork_hook_once, install_fork_hook);
    if ((pid = __atomic_load_n(&self_pid, __ATOMIC_ACQUIRE)) != 0)
        return pid;
    pid = getpid();
    __atomic_store_n(&self_namespace, stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&self_pid, pid, __ATOMIC_RELEASE);
    return pid;
}

uint64_t gpb_pid_namespace(void)
{
    look_up_self();
    return __atomic_load_n(&self_namespace, __ATOMIC_RELAXED);
}

/* ---- names ----------------------------------------------------------- */

static const char *const codec_names[GPUBALANCE_N_CODECS] = {
    [GPUBALANCE_CODEC_H264] = "h264",
    [GPUBALANCE_CODEC_HEVC] = "hevc",
    [GPUBALANCE_CODEC_AV1] = "av1",
};
static const char *const backend_names[GPUBALANCE_N_BACKENDS] = {
    [GPUBALANCE_BACKEND_NVENC] = "nvenc",
    [GPUBALANCE_BACKEND_VAAPI] = "vaapi",
    [GPUBALANCE_BACKEND_SOFTWARE] = "software",
    [GPUBALANCE_BACKEND_SIM] = "sim",
};
static const char *const policy_names[] = {
    [GPUBALANCE_POLICY_BALANCED] = "balanced",
    [GPUBALANCE_POLICY_FILL] = "fill",
};
static const char *const when_full_names[] = {
    [GPUBALANCE_WHEN_FULL_SOFTWARE] = "software",
    [GPUBALANCE_WHEN_FULL_WAIT] = "wait",
    [GPUBALANCE_WHEN_FULL_FAIL] = "fail",
};
static const char *const lease_state_names[] = {
    [GPUBALANCE_LEASE_GRANTED] = "granted",
    [GPUBALANCE_LEASE_OPENED] = "opened",
    [GPUBALANCE_LEASE_FAILED] = "failed",
};

/* The name of an enum value, NULL for a value out of range (a caller may
 * pass any int). */
static const char *name_of(const char *const *names, size_t n, int value)
{
    return value >= 0 && (size_t)value < n ? names[value] : NULL;
}

/* The value a name stands for (any case), or -1. */
static int value_of(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (g_ascii_strcasecmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

const char *gpubalance_codec_name(gpubalance_codec codec)
{
    return name_of(codec_names, G_N_ELEMENTS(codec_names), (int)codec);
}

int gpubalance_codec_from_name(const char *name)
{
    int codec = value_of(codec_names, G_N_ELEMENTS(codec_names), name);

    if (codec >= 0)
        return codec;
    if (name && g_ascii_strcasecmp(name, "h265") == 0)
        return GPUBALANCE_CODEC_HEVC;
    return GPUBALANCE_ERR_INVALID_ARGUMENT;
}

const char *gpubalance_backend_name(gpubalance_backend backend)
{
    return name_of(backend_names, G_N_ELEMENTS(backend_names), (int)backend);
}

int gpb_backend_from_name(const char *name, gpubalance_backend *out)
{
    int backend = value_of(backend_names, G_N_ELEMENTS(backend_names), name);

    if (backend < 0)
        return GPUBALANCE_ERR_INVALID_ARGUMENT;
    *out = (gpubalance_backend)backend;
    return 0;
}

const char *gpubalance_policy_name(gpubalance_policy policy)
{
    return name_of(policy_names, G_N_ELEMENTS(policy_names), (int)policy);
}

const char *gpubalance_when_full_name(gpubalance_when_full when_full)
{
    return name_of(when_full_names, G_N_ELEMENTS(when_full_names), (int)when_full);
}

const char *gpubalance_lease_state_name(gpubalance_lease_state state)
{
    return name_of(lease_state_names, G_N_ELEMENTS(lease_state_names), (int)state);
}

/* Removes a directory tree, not following symbolic links (tests, benches). */
void gpb_remove_tree(const char *path)
{
    GDir *dir = g_dir_open(path, 0, NULL);
    const char *name;

    if (dir) {
        while ((name = g_dir_read_name(dir))) {
            char *child = g_build_filename(path, name, NULL);

            if (g_file_test(child, G_FILE_TEST_IS_DIR) && !g_file_test(child, G_FILE_TEST_IS_SYMLINK))
                gpb_remove_tree(child);
            else
                g_unlink(child);
            g_free(child);
        }
        g_dir_close(dir);
    }
    g_rmdir(path);
}
