/* drm_shim.c - the stand-in render node, preloaded (LD_PRELOAD) into
 * unmodified programs: libva (2.17 and later) asks libdrm whether its file
 * descriptor is a DRM render node, and libdrm asks the kernel through
 * sysfs, which a machine without a GPU cannot answer yes. Here a regular
 * file named renderD<N> (made by the test, in a directory of its own)
 * answers yes; every other descriptor goes to the real libdrm. The
 * stand-in VA-API driver never touches the descriptor. Test
 * infrastructure only. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DRM_NODE_RENDER 2 /* libdrm's xf86drm.h */

int drmGetNodeTypeFromFd(int fd);

static int is_standin_node(int fd)
{
    char link[64], path[PATH_MAX];
    struct stat st;
    const char *base;
    ssize_t n;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    base = strrchr(path, '/');
    return base && strncmp(base + 1, "renderD", 7) == 0;
}

int drmGetNodeTypeFromFd(int fd)
{
    int (*real)(int);

    if (is_standin_node(fd))
        return DRM_NODE_RENDER;
    real = (int (*)(int))dlsym(RTLD_NEXT, "drmGetNodeTypeFromFd");
    return real ? real(fd) : -1;
}
