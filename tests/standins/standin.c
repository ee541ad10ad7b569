/* standin.c - configuration and the cross-process session registry of the
 * stand-in NVIDIA libraries (see standin.h). */
#define _GNU_SOURCE
#include "standin.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static standin_gpu gpus[STANDIN_MAX_GPUS];
static int n_gpus;
static pthread_once_t parsed = PTHREAD_ONCE_INIT;

static char *trim(char *s)
{
    char *end;

    while (*s == ' ')
        s++;
    end = s + strlen(s);
    while (end > s && end[-1] == ' ')
        *--end = '\0';
    return s;
}

static int brand_of(const char *word)
{
    if (!strcmp(word, "geforce"))
        return STANDIN_BRAND_GEFORCE;
    if (!strcmp(word, "datacenter"))
        return STANDIN_BRAND_DATACENTER;
    fprintf(stderr, "stand-in GPUs: brand \"%s\" is neither geforce nor datacenter; taking datacenter\n", word);
    return STANDIN_BRAND_DATACENTER;
}

/* NAME,BRAND,CODECS */
static void parse_gpu(char *entry, standin_gpu *gpu)
{
    char *name = strtok_r(entry, ",", &entry);
    char *brand = strtok_r(NULL, ",", &entry);
    char *codecs = strtok_r(NULL, ",", &entry);

    snprintf(gpu->name, sizeof(gpu->name), "%s", name ? trim(name) : "Stand-in GPU");
    gpu->brand = brand ? brand_of(trim(brand)) : STANDIN_BRAND_DATACENTER;
    codecs = codecs ? trim(codecs) : "h264+hevc";
    gpu->h264 = strstr(codecs, "h264") != NULL;
    gpu->hevc = strstr(codecs, "hevc") != NULL;
}

static void parse_config(void)
{
    const char *spec = getenv("GPB_STANDIN_GPUS");
    char *copy, *rest, *entry;

    if (!spec || !*spec) {
        gpus[0] = (standin_gpu){
            .name = "Stand-in datacenter GPU", .brand = STANDIN_BRAND_DATACENTER, .h264 = true, .hevc = true};
        n_gpus = 1;
        return;
    }
    copy = strdup(spec);
    rest = copy;
    while (n_gpus < STANDIN_MAX_GPUS && (entry = strtok_r(rest, ";", &rest)))
        if (*trim(entry))
            parse_gpu(entry, &gpus[n_gpus++]);
    free(copy);
}

int standin_gpu_count(void)
{
    pthread_once(&parsed, parse_config);
    return n_gpus;
}

const standin_gpu *standin_gpu_at(int nvml_index)
{
    if (nvml_index < 0 || nvml_index >= standin_gpu_count())
        return NULL;
    return &gpus[nvml_index];
}

bool standin_gpu_has_nvenc(const standin_gpu *gpu)
{
    return gpu && (gpu->h264 || gpu->hevc);
}

const char *standin_driver_version(void)
{
    const char *v = getenv("GPB_STANDIN_DRIVER");

    return v && *v ? v : "535.104.05";
}

int standin_cuda_to_nvml(int ordinal)
{
    int n = standin_gpu_count();

    return ordinal >= 0 && ordinal < n ? n - 1 - ordinal : -1;
}

int standin_nvml_to_cuda(int nvml_index)
{
    return standin_cuda_to_nvml(nvml_index); /* the reversal is its own inverse */
}

unsigned standin_pci_bus(int nvml_index)
{
    return 0x21 + 0x40 * (unsigned)nvml_index;
}

void standin_uuid(int nvml_index, char *buf, size_t size)
{
    snprintf(buf, size, "GPU-5a4d0000-0000-4000-8000-%012d", nvml_index);
}

/* ---- sessions, counted across processes ---------------------------------- */

/* The driver's per-system cap on GeForce NVENC sessions. */
static int geforce_cap(void)
{
    const char *forced = getenv("GPB_STANDIN_GEFORCE_CAP");
    int major = atoi(standin_driver_version());

    if (forced && *forced)
        return atoi(forced);

    return major >= 550 ? 8 : major >= 530 ? 5 : 3;
}

static const char *state_dir(void)
{
    static char path[256];
    const char *v = getenv("GPB_STANDIN_STATE");

    if (v && *v)
        snprintf(path, sizeof(path), "%s", v);
    else
        snprintf(path, sizeof(path), "/tmp/gpb-standin-%u", (unsigned)getuid());
    mkdir(path, 0700);
    return path;
}

static int lock_fd(int fd, short type, int cmd)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET};

    return fcntl(fd, cmd, &lock);
}

/* The directory's lock: counting and creating are one step under it. */
static int lock_registry(void)
{
    char path[300];
    int fd;

    snprintf(path, sizeof(path), "%s/registry.lock", state_dir());
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (lock_fd(fd, F_WRLCK, F_OFD_SETLKW) < 0)
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    return fd;
}

/* Is the session file held by a live open file description? A file that no
 * one holds is a session whose process died: removed. */
static bool session_alive(int dir_fd, const char *name)
{
    int fd = openat(dir_fd, name, O_RDWR | O_CLOEXEC);
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    bool alive;

    if (fd < 0)
        return false;
    alive = fcntl(fd, F_OFD_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
    if (!alive)
        unlinkat(dir_fd, name, 0);
    close(fd);
    return alive;
}

/* Sessions on GPU nvml_index, or on every GeForce GPU when nvml_index is
 * -1. Call with the registry locked. */
static int count_locked(int nvml_index)
{
    DIR *dir = opendir(state_dir());
    struct dirent *e;
    int n = 0, gpu;

    if (!dir)
        return 0;
    while ((e = readdir(dir)))
        if (sscanf(e->d_name, "session.%d.", &gpu) == 1 &&
            (nvml_index < 0 ? standin_gpu_at(gpu) && standin_gpu_at(gpu)->brand == STANDIN_BRAND_GEFORCE
                            : gpu == nvml_index))
            n += session_alive(dirfd(dir), e->d_name);
    closedir(dir);
    return n;
}

int standin_sessions_on(int nvml_index)
{
    int registry = lock_registry();
    int n;

    if (registry < 0)
        return 0;
    n = count_locked(nvml_index);
    close(registry);
    return n;
}

int standin_session_open(int nvml_index)
{
    static atomic_int serial;
    const standin_gpu *gpu = standin_gpu_at(nvml_index);
    int registry = lock_registry();
    char path[400];
    int fd = -2;

    if (registry < 0)
        return -2;
    if (gpu->brand == STANDIN_BRAND_GEFORCE && count_locked(-1) >= geforce_cap()) {
        close(registry);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/session.%d.%d.%d", state_dir(), nvml_index, (int)getpid(),
             atomic_fetch_add(&serial, 1));
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0 && lock_fd(fd, F_WRLCK, F_OFD_SETLK) < 0) {
        close(fd);
        unlink(path);
        fd = -2;
    }
    close(registry);
    return fd < 0 ? -2 : fd;
}

void standin_session_close(int fd)
{
    char link[64], path[400];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof(path) - 1);
    if (n > 0) {
        path[n] = '\0';
        unlink(path);
    }
    close(fd);
}
