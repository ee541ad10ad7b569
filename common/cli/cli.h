/* cli.h - what the gpubalance command's files share. */
#ifndef GPB_CLI_H
#define GPB_CLI_H

#include <glib.h>

#include "gpubalance.h"

#define EXIT_USAGE 2

/* main.c: prints "gpubalance WHAT: last error" and returns EXIT_FAILURE. */
int cli_fail(const char *what, int status);
/* main.c: parses a command's options; a bad option or a stray argument
 * prints the problem and the command's help. Returns 0 or EXIT_USAGE. */
int cli_parse_options(GOptionContext *octx, const char *command, int *argc, char ***argv);

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

/* watch.c: blocks SIGINT and SIGTERM and returns a signalfd reading them
 * (-1 on failure), so that a loop polls for them with its other fds. */
int cli_signal_fd(void);

#endif
