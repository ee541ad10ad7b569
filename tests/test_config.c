/* test_config.c - every way a config file can be wrong names the file,
 * the group, the key and what is allowed. */
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "helpers.h"

typedef struct {
    const char *text;
    const char *expect[3]; /* substrings of the message */
} bad_config;

static const bad_config bad_configs[] = {
    {"[general]\npolicy balanced\n", {"test.conf", "policy balanced"}},
    {"[colors]\nred=1\n", {"test.conf: unknown group [colors]", "[pool:NAME], [device:NAME]"}},
    {"[general]\npolcy=fill\n", {"test.conf: [general] unknown key 'polcy'", "allowed keys: policy, order"}},
    {"[general]\npolicy=fast\n", {"[general] policy=fast", "not one of: balanced, fill"}},
    {"[general]\norder=nvenc,cuda\n", {"[general] order=nvenc,cuda", "order entry 'cuda'", "nvenc, vaapi, software"}},
    {"[general]\norder=nvenc,nvenc\n", {"[general] order=nvenc,nvenc", "names 'nvenc' twice"}},
    {"[general]\norder=\n", {"[general] order=", "order is empty"}},
    {"[general]\norder=sim\n", {"[general] order=sim", "order entry 'sim'"}},
    {"[general]\nwhen-full=later\n", {"[general] when-full=later", "software, wait, fail"}},
    {"[general]\nwait-timeout=soon\n", {"[general] wait-timeout=soon", "not a number"}},
    {"[general]\nwait-timeout=-1\n", {"[general] wait-timeout=-1", "out of range; allowed: 0..86400"}},
    {"[general]\ndiscover=maybe\n", {"[general] discover=maybe", "not a boolean; allowed: true, false"}},
    {"[general]\nlearn-expiry=nan\n", {"[general] learn-expiry=nan", "not a number"}},
    {"[software]\nbudget=-3\n", {"[software] budget=-3", "out of range"}},
    {"[software]\ncodecs=h264,vp9\n", {"[software] codecs=h264,vp9", "unknown codec 'vp9'", "h264, hevc, av1"}},
    {"[software]\nthreads=4\n", {"[software] unknown key 'threads'", "allowed keys: budget, codecs"}},
    {"[pool:]\nmax-sessions=3\n", {"[pool:]", "a pool needs a name"}},
    {"[pool:geforce]\nmax-sessions=three\n", {"[pool:geforce] max-sessions=three", "not an integer"}},
    {"[pool:geforce]\nmax-sessions=99999\n", {"[pool:geforce] max-sessions=99999", "out of range; allowed: 0..4096"}},
    {"[pool:geforce]\ncap=3\n", {"[pool:geforce] unknown key 'cap'", "allowed keys: max-sessions"}},
    {"[device:gpu0]\ncodecs=h264\n", {"[device:gpu0]", "missing key 'backend'", "sim, nvenc, vaapi"}},
    {"[device:gpu0]\nbackend=quantum\n", {"[device:gpu0] backend=quantum", "allowed: sim, nvenc, vaapi"}},
    {"[device:gpu0]\nbackend=software\n", {"[device:gpu0] backend=software", "configure it in [software]"}},
    {"[device:gpu0]\nbackend=nvenc\nenforce-sessions=2\ncuda-device=0\n",
     {"[device:gpu0] enforce-sessions=2", "only allowed with backend=sim"}},
    {"[device:gpu0]\nbackend=sim\ncuda-device=0\n", {"[device:gpu0] cuda-device=0", "only allowed with backend=nvenc"}},
    {"[device:gpu0]\nbackend=nvenc\n", {"[device:gpu0]", "needs key 'cuda-device'"}},
    {"[device:gpu0]\nbackend=nvenc\ncuda-device=x\n",
     {"[device:gpu0] cuda-device=x", "not an integer; allowed: 0..63"}},
    {"[device:va]\nbackend=vaapi\n", {"[device:va]", "needs key 'render-node'"}},
    {"[device:va]\nbackend=vaapi\nrender-node=/tmp/x\n",
     {"[device:va] render-node=/tmp/x", "a path /dev/dri/renderD<N>"}},
    {"[device:gpu0]\nbackend=sim\npool=nope\n", {"[device:gpu0] pool=nope", "add a [pool:nope] group"}},
    {"[device:a]\nbackend=nvenc\ncuda-device=0\n[device:b]\nbackend=nvenc\ncuda-device=0\n",
     {"[device:b] and [device:a] both describe device nvenc:0"}},
    {"[device:bad name]\nbackend=sim\n", {"[device:bad name]", "a device name is 1-40 letters"}},
    {"[device:gpu0]\nbackend=sim\nmax-sessions=-1\n", {"[device:gpu0] max-sessions=-1", "out of range"}},
    {"[device:gpu0]\nbackend=sim\nimitates=software\n", {"[device:gpu0] imitates=software", "allowed: nvenc, vaapi"}},
    {"[device:gpu0]\nbackend=sim\nten-bit=sometimes\n", {"[device:gpu0] ten-bit=sometimes", "not a boolean"}},
    {"[device:gpu0]\nbackend=sim\nmax-width=8\n", {"[device:gpu0] max-width=8", "allowed: 16..16384"}},
    {"[device:gpu0]\nbackend=sim\nspeed=fast\n", {"[device:gpu0] unknown key 'speed'", "allowed keys: backend"}},
    {"[device:gpu0]\nbackend=sim\n[general]\npolicy=fill\n  [device:gpu0]  \nmax-sessions=1\n",
     {"group [device:gpu0] appears twice (lines 1 and 5)", "write it once"}},
};

static void every_bad_config_names_file_group_and_key(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(bad_configs); i++) {
        const bad_config *c = &bad_configs[i];
        gpb_config *config = NULL;
        int status = gpb_config_parse(c->text, strlen(c->text), "/etc/test.conf", &config);

        if (status != GPUBALANCE_ERR_CONFIG)
            g_error("config %zu was accepted:\n%s", i, c->text);
        g_assert_null(config);
        for (int j = 0; j < 3 && c->expect[j]; j++)
            gpb_assert_contains(gpubalance_last_error(), c->expect[j]);
        gpb_assert_contains(gpubalance_last_error(), "/etc/test.conf");
    }
}

static void a_full_config_is_read(void)
{
    static const char text[] = "[general]\n"
                               "policy=fill\n"
                               "order=vaapi, nvenc ,software\n"
                               "when-full=wait\n"
                               "wait-timeout=2.5\n"
                               "discover=false\n"
                               "learn-expiry=90\n"
                               "[software]\n"
                               "budget=12\n"
                               "codecs=h264\n"
                               "[pool:geforce]\n"
                               "max-sessions=8\n"
                               "[device:gpu0]\n"
                               "backend=sim\n"
                               "codecs=h264,hevc,av1\n"
                               "max-sessions=3\n"
                               "budget=16\n"
                               "pool=geforce\n"
                               "enforce-sessions=2\n"
                               "imitates=vaapi\n"
                               "max-width=4096\n"
                               "max-height=2304\n"
                               "ten-bit=false\n"
                               "name=Pretend Arc\n"
                               "[device:card]\n"
                               "backend=vaapi\n"
                               "render-node=/dev/dri/renderD129\n";
    gpb_config *c = NULL;
    const gpb_device_config *d;

    g_assert_cmpint(gpb_config_parse(text, strlen(text), "full.conf", &c), ==, 0);
    g_assert_cmpint(c->policy, ==, GPUBALANCE_POLICY_FILL);
    g_assert_cmpint(c->order.n, ==, 3);
    g_assert_cmpint(c->order.backends[0], ==, GPUBALANCE_BACKEND_VAAPI);
    g_assert_cmpint(c->when_full, ==, GPUBALANCE_WHEN_FULL_WAIT);
    g_assert_cmpfloat(c->wait_timeout, ==, 2.5);
    g_assert_false(c->discover);
    g_assert_cmpfloat(c->learn_expiry, ==, 90);
    g_assert_cmpfloat(c->software_budget, ==, 12);
    g_assert_cmpuint(c->software_codecs, ==, 1u);
    g_assert_cmpuint(c->devices->len, ==, 2);
    d = g_ptr_array_index(c->devices, 0);
    g_assert_cmpstr(d->id, ==, "sim:gpu0");
    g_assert_cmpstr(d->display_name, ==, "Pretend Arc");
    g_assert_cmpint(d->imitates, ==, GPUBALANCE_BACKEND_VAAPI);
    g_assert_cmpuint(d->codecs, ==, 7u);
    g_assert_cmpint(d->max_sessions, ==, 3);
    g_assert_cmpint(d->enforce_sessions, ==, 2);
    g_assert_cmpfloat(d->budget, ==, 16);
    g_assert_cmpstr(d->pool, ==, "geforce");
    g_assert_cmpint(d->max_height, ==, 2304);
    g_assert_false(d->ten_bit);
    d = g_ptr_array_index(c->devices, 1);
    g_assert_cmpstr(d->id, ==, "vaapi:renderD129");
    g_assert_cmpstr(d->render_node, ==, "/dev/dri/renderD129");
    gpb_config_free(c);
}

static void missing_config_named_by_the_environment_is_an_error(void)
{
    gpubalance_context *ctx = NULL;

    gpb_test_env(NULL);
    g_setenv("GPUBALANCE_CONFIG", "/nonexistent/gpubalance.conf", TRUE);
    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, GPUBALANCE_ERR_CONFIG);
    g_assert_null(ctx);
    gpb_assert_contains(gpubalance_last_error(), "GPUBALANCE_CONFIG=/nonexistent/gpubalance.conf: no such file");
}

static void context_open_reports_config_errors(void)
{
    gpubalance_context *ctx = NULL;
    const char *dir = gpb_test_env("[general]\nwhen-full=sometimes\n");

    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, GPUBALANCE_ERR_CONFIG);
    gpb_assert_contains(gpubalance_last_error(), dir);
    gpb_assert_contains(gpubalance_last_error(), "gpubalance.conf: [general] when-full=sometimes");
    g_assert_cmpstr(gpubalance_strerror(GPUBALANCE_ERR_CONFIG), ==, "invalid configuration");
}

static void defaults_apply_without_a_file(void)
{
    gpubalance_context *ctx;

    gpb_test_env(NULL);
    g_setenv("XDG_CONFIG_HOME", g_getenv("GPUBALANCE_DIR"), TRUE); /* no user config */
    if (g_file_test("/etc/gpubalance.conf", G_FILE_TEST_EXISTS))
        gpb_test_skip("/etc/gpubalance.conf exists on this machine");
    ctx = gpb_test_open();
    g_assert_null(gpubalance_context_config_path(ctx));
    gpubalance_context_close(ctx);
}

/* Opening a context with GPUBALANCE_CONFIG=path fails at once (a FIFO
 * with no writer would block a reader forever) naming path and why. */
static void assert_config_refused(const char *path, const char *why)
{
    gpubalance_context *ctx = NULL;

    g_setenv("GPUBALANCE_CONFIG", path, TRUE);
    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, GPUBALANCE_ERR_CONFIG);
    g_assert_null(ctx);
    gpb_assert_contains(gpubalance_last_error(), path);
    gpb_assert_contains(gpubalance_last_error(), why);
}

static void config_must_be_a_small_regular_file(void)
{
    const char *dir = gpb_test_env(NULL);
    char *fifo = g_build_filename(dir, "fifo.conf", NULL);
    char *big = g_build_filename(dir, "big.conf", NULL);
    gchar *text = g_strnfill(2 * 1024 * 1024, '#');

    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    g_assert_true(g_file_set_contents(big, text, -1, NULL));
    assert_config_refused("/dev/zero", "is not a regular file");
    assert_config_refused("/dev/urandom", "is not a regular file");
    assert_config_refused(fifo, "is not a regular file");
    assert_config_refused(dir, "is not a regular file");
    assert_config_refused(big, "a config file is at most 1048576 bytes");
    g_free(text);
    g_free(big);
    g_free(fifo);
}

static const gpb_test_case cases[] = {
    {"config_must_be_a_small_regular_file", config_must_be_a_small_regular_file},
    {"every_bad_config_names_file_group_and_key", every_bad_config_names_file_group_and_key},
    {"a_full_config_is_read", a_full_config_is_read},
    {"missing_config_named_by_the_environment_is_an_error", missing_config_named_by_the_environment_is_an_error},
    {"context_open_reports_config_errors", context_open_reports_config_errors},
    {"defaults_apply_without_a_file", defaults_apply_without_a_file},
};

GPB_TEST_MAIN(cases)
