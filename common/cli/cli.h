/* cli.h - what the gpubalance command's files share. */
#ifndef GPB_CLI_H
#define GPB_CLI_H

#include <glib.h>

#include "gpubalance.h"

#define EXIT_USAGE 2

/* main.c: prints "gpubalance WHAT: last error" and returns EXIT_FAILURE. */
int cli_fail(const char *what, int status);

/* One run of a subcommand: what every command does before and after its
 * own work, in one place. Fill in name, parameter (the text after
 * "gpubalance NAME" in --help), entries (NULL-terminated) and open, then
 * cli_start(); end with cli_end(). */
typedef enum {
    CLI_OPEN_CONTEXT, /* cli_start() opens the context */
    CLI_OPEN_LATER,   /* the command calls cli_open() itself (after more checks, or with flags) */
} cli_open_when;

typedef struct {
    const char *name;
    const char *parameter;
    const GOptionEntry *entries;
    cli_open_when open;
    GOptionContext *octx;    /* set by cli_start(): for usage errors */
    gpubalance_context *ctx; /* set by cli_open() */
} cli_command;

/* Parses the command's options (a bad option or a stray argument prints
 * the problem and the command's help) and, with CLI_OPEN_CONTEXT, opens
 * the context. Returns 0, EXIT_USAGE or EXIT_FAILURE (printed). */
int cli_start(cli_command *cmd, int *argc, char ***argv);
/* Opens the context with flags; returns 0 or EXIT_FAILURE (printed). */
int cli_open(cli_command *cmd, unsigned flags);
/* Takes a snapshot; returns 0 or EXIT_FAILURE (printed). */
int cli_snapshot(const cli_command *cmd, gpubalance_snapshot **snap);
/* Closes the context and frees the options; returns rc. */
int cli_end(cli_command *cmd, int rc);

/* metrics.c: `gpubalance metrics`. */
int cmd_metrics(int argc, char **argv);

/* log.c: `gpubalance log`. */
int cmd_log(int argc, char **argv);

/* watch.c: `status --watch`: prints with print(snapshot, json) on every
 * change of the ledger, until SIGINT or SIGTERM. On a terminal (text
 * mode) it draws on the alternate screen, with a utilisation bar per
 * device above the table, and restores the screen on exit. */
typedef void (*cli_print_status)(const gpubalance_snapshot *snap, gboolean json);
int cli_watch_status(gpubalance_context *ctx, gboolean json, cli_print_status print);

/* watch.c: waits for changes of the ledger until SIGINT or SIGTERM (both
 * blocked and read from a signalfd, so the loop ends normally):
 *     cli_watcher_open(); do { look } while (cli_watcher_wait()); cli_watcher_close();
 * The watch is armed at open and drained on each wake-up before the caller
 * looks again, so no change falls between a look and the next wait. */
typedef struct {
    gpubalance_watch *watch;
    int signals;
} cli_watcher;

/* Returns 0 or EXIT_FAILURE (printed, naming command). */
int cli_watcher_open(cli_watcher *w, gpubalance_context *ctx, const char *command);
/* TRUE when the ledger changed, FALSE on SIGINT or SIGTERM. */
gboolean cli_watcher_wait(cli_watcher *w);
void cli_watcher_close(cli_watcher *w);

#endif
