/* watch.c - `gpubalance status --watch`: redraws when the ledger changes.
 *
 * No timer: a gpubalance_watch (inotify on the ledger directory, the
 * wake-up that when-full=wait uses) says when a lease was taken, released
 * or ended with its process. Ctrl-C and SIGTERM arrive on a signalfd in
 * the same poll(), so the loop ends normally and restores the terminal. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"

#define BAR_WIDTH 30

/* alternate screen on, cursor hidden / cursor shown, alternate screen off */
#define SCREEN_ENTER "\033[?1049h\033[?25l"
#define SCREEN_LEAVE "\033[?25h\033[?1049l"
#define SCREEN_CLEAR "\033[H\033[2J"

/* SIGINT and SIGTERM blocked, readable from the returned signalfd (-1 on
 * failure), so that the loop polls for them with the ledger watch. */
static int signal_fd(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    return signalfd(-1, &set, SFD_CLOEXEC);
}

int cli_watcher_open(cli_watcher *w, gpubalance_context *ctx, const char *command)
{
    int status;

    w->watch = NULL;
    if ((w->signals = signal_fd()) < 0) {
        fprintf(stderr, "gpubalance %s: cannot catch signals: %s\n", command, g_strerror(errno));
        return EXIT_FAILURE;
    }
    if ((status = gpubalance_watch_new(ctx, &w->watch)) < 0) {
        close(w->signals);
        return cli_fail(command, status);
    }
    return 0;
}

gboolean cli_watcher_wait(cli_watcher *w)
{
    struct pollfd fds[2] = {
        {.fd = gpubalance_watch_fd(w->watch), .events = POLLIN},
        {.fd = w->signals, .events = POLLIN},
    };

    while (poll(fds, 2, -1) < 0 && errno == EINTR)
        ;
    if (fds[1].revents)
        return FALSE;                 /* Ctrl-C or SIGTERM: a normal end */
    gpubalance_watch_drain(w->watch); /* before the caller looks: no change falls between */
    return TRUE;
}

void cli_watcher_close(cli_watcher *w)
{
    gpubalance_watch_free(w->watch);
    close(w->signals);
}

/* The device's utilisation as placement sees it: the larger of sessions
 * over the limit in force and load over the budget. FALSE when the device
 * has neither (nothing to fill). */
static gboolean utilisation(const gpubalance_device_info *d, double *u)
{
    int limit = d->max_sessions;
    gboolean limited = FALSE;

    if (d->learned_limit >= 0 && (limit <= 0 || d->learned_limit < limit))
        limit = d->learned_limit;
    *u = 0;
    if (limit == 0 && d->learned_limit == 0) {
        *u = 1; /* learned that it takes nothing now */
        limited = TRUE;
    } else if (limit > 0) {
        *u = (double)(d->sessions + d->foreign_sessions) / limit;
        limited = TRUE;
    }
    if (d->budget > 0) {
        *u = MAX(*u, d->load / d->budget);
        limited = TRUE;
    }
    return limited;
}

static void print_bars(const gpubalance_snapshot *snap)
{
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++) {
        const gpubalance_device_info *d = gpubalance_snapshot_device(snap, i);
        char bar[BAR_WIDTH + 1];
        double u;

        if (!utilisation(d, &u)) {
            printf("%-20s [%-*s]      %d session(s)\n", d->id, BAR_WIDTH, " no limit", d->sessions);
            continue;
        }
        int filled = (int)CLAMP(u * BAR_WIDTH + 0.5, 0, BAR_WIDTH);

        memset(bar, '#', (size_t)filled);
        memset(bar + filled, '.', (size_t)(BAR_WIDTH - filled));
        bar[BAR_WIDTH] = '\0';
        printf("%-20s [%s] %4.0f%% %d session(s)\n", d->id, bar, u * 100, d->sessions);
    }
}

static void draw(const gpubalance_snapshot *snap, gboolean json, gboolean screen, cli_print_status print)
{
    if (json) {
        print(snap, TRUE);
    } else if (screen) {
        GDateTime *now = g_date_time_new_now_local();
        gchar *clock = g_date_time_format(now, "%H:%M:%S");

        printf(SCREEN_CLEAR "gpubalance status --watch (redrawn on every change; Ctrl-C quits) %s\n\n", clock);
        print_bars(snap);
        printf("\n");
        print(snap, FALSE);
        g_free(clock);
        g_date_time_unref(now);
    } else {
        print(snap, FALSE);
        printf("\n");
    }
    fflush(stdout);
}

int cli_watch_status(gpubalance_context *ctx, gboolean json, cli_print_status print)
{
    gboolean screen = !json && isatty(STDOUT_FILENO);
    cli_watcher w;
    int status, rc;

    if ((rc = cli_watcher_open(&w, ctx, "status")) != 0)
        return rc;
    if (screen)
        printf(SCREEN_ENTER);
    do {
        gpubalance_snapshot *snap;

        if ((status = gpubalance_snapshot_take(ctx, &snap)) < 0) {
            rc = cli_fail("status", status);
            break;
        }
        draw(snap, json, screen, print);
        gpubalance_snapshot_free(snap);
    } while (cli_watcher_wait(&w));
    if (screen) {
        printf(SCREEN_LEAVE);
        fflush(stdout);
    }
    cli_watcher_close(&w);
    return rc;
}
