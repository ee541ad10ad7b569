/* log.c - `gpubalance log`: the host's event log, every process's
 * placements, fallbacks, refusals, learned limits, waits, rejections and
 * expiries, from the bounded ring kept beside the ledger. */
#define _GNU_SOURCE
#include <stdio.h>

#include "cli.h"

/* "2026-11-24T23:29:01.123Z info event=placed ..." */
static gchar *event_line(const gpubalance_event *event)
{
    static const char *const levels[] = {"error", "warning", "info", "debug"};
    GDateTime *dt = g_date_time_new_from_unix_utc(event->unix_ms / 1000);
    gchar *when = dt ? g_date_time_format(dt, "%Y-%m-%dT%H:%M:%S") : g_strdup("?");
    gchar *line = g_strdup_printf("%s.%03dZ %s %s", when, (int)((event->unix_ms % 1000 + 1000) % 1000),
                                  levels[event->level], event->text);

    g_free(when);
    if (dt)
        g_date_time_unref(dt);
    return line;
}

static void print_event(const gpubalance_event *event, void *user_data)
{
    gchar *line = event_line(event);

    (void)user_data;
    printf("%s\n", line);
    g_free(line);
}

static void keep_event(const gpubalance_event *event, void *user_data)
{
    g_ptr_array_add(user_data, event_line(event));
}

/* Prints what is logged from now on, until SIGINT or SIGTERM. */
static int follow(gpubalance_context *ctx, uint64_t seen)
{
    cli_watcher w;
    int rc;

    if ((rc = cli_watcher_open(&w, ctx, "log")) != 0)
        return rc;
    do {
        seen = gpubalance_events_read(ctx, seen, print_event, NULL);
        fflush(stdout);
    } while (cli_watcher_wait(&w));
    cli_watcher_close(&w);
    return EXIT_SUCCESS;
}

int cmd_log(int argc, char **argv)
{
    gboolean follow_on = FALSE;
    gint lines = 0;
    GOptionEntry entries[] = {
        {"lines", 'n', 0, G_OPTION_ARG_INT, &lines, "Print only the last N events (default: all kept)", "N"},
        {"follow", 'f', 0, G_OPTION_ARG_NONE, &follow_on, "Then print new events as they happen, until interrupted",
         NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    cli_command cmd = {.name = "log",
                       .parameter = "- the host's placements, refusals and expiries",
                       .entries = entries,
                       .open = CLI_OPEN_LATER};
    GPtrArray *kept;
    uint64_t seen;
    int rc;

    if ((rc = cli_start(&cmd, &argc, &argv)) != 0)
        return cli_end(&cmd, rc);
    if (lines < 0) {
        fprintf(stderr, "gpubalance: log: --lines %d: not a count of lines\n", lines);
        return cli_end(&cmd, EXIT_USAGE);
    }
    if ((rc = cli_open(&cmd, 0)) != 0)
        return cli_end(&cmd, rc);
    kept = g_ptr_array_new_with_free_func(g_free);
    seen = gpubalance_events_read(cmd.ctx, 0, keep_event, kept);
    for (guint i = lines > 0 && kept->len > (guint)lines ? kept->len - (guint)lines : 0; i < kept->len; i++)
        printf("%s\n", (const char *)g_ptr_array_index(kept, i));
    g_ptr_array_unref(kept);
    fflush(stdout);
    if (follow_on)
        rc = follow(cmd.ctx, seen);
    return cli_end(&cmd, rc);
}
