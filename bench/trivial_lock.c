/* bench/trivial_lock.c - the yardstick for a cold `gpubalance pick`: a
 * program that opens one file and locks a byte of it, linked with libc
 * only. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int fd;

    if (argc < 2 || (fd = open(argv[1], O_RDWR | O_CLOEXEC)) < 0)
        return 1;
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
        return 1;
    close(fd);
    return 0;
}
