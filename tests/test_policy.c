/* test_policy.c - placement rules: the pure policy function, then the
 * same rules through real contexts, leases and a real ledger. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"
#include "policy.h"
#include "util.h"

#define ALL_CODECS 7u

static gpb_policy_device dev(const char *id, gpubalance_backend backend, int sessions, int limit)
{
    return (gpb_policy_device){
        .id = id,
        .backend = backend,
        .order_backend = backend,
        .codecs = ALL_CODECS,
        .max_width = 4096,
        .max_height = 4096,
        .ten_bit = true,
        .sessions = sessions,
        .session_limit = limit,
        .pool = -1,
    };
}

static gpb_policy_request request(gpubalance_policy policy)
{
    gpb_policy_request r = {
        .codec = GPUBALANCE_CODEC_H264,
        .width = 1920,
        .height = 1080,
        .bit_depth = 8,
        .cost = 1.0,
        .policy = policy,
        .forced = -1,
    };

    gpb_order_parse("nvenc,vaapi,software", &r.order);
    return r;
}

static int choose(const gpb_policy_device *d, int n, const gpb_policy_pool *pools, const gpb_policy_request *r)
{
    gpb_policy_result result;

    gpb_policy_choose(d, n, pools, r, &result);
    return result.outcome == GPB_CHOSEN ? result.device : -1;
}

static void balanced_picks_lowest_utilisation(void)
{
    gpb_policy_device d[] = {
        dev("a", GPUBALANCE_BACKEND_NVENC, 2, 4),
        dev("b", GPUBALANCE_BACKEND_NVENC, 0, 4),
        dev("c", GPUBALANCE_BACKEND_NVENC, 1, 4),
    };
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);

    g_assert_cmpint(choose(d, 3, NULL, &r), ==, 1);
    /* a bigger device with more sessions can still be less utilised */
    d[0].session_limit = 12;
    d[1].sessions = 2;
    g_assert_cmpint(choose(d, 3, NULL, &r), ==, 0);
}

static void balanced_ties_go_to_fewer_sessions_then_lower_index(void)
{
    gpb_policy_device d[] = {
        dev("a", GPUBALANCE_BACKEND_NVENC, 1, GPB_NO_LIMIT),
        dev("b", GPUBALANCE_BACKEND_NVENC, 0, GPB_NO_LIMIT),
        dev("c", GPUBALANCE_BACKEND_NVENC, 0, GPB_NO_LIMIT),
    };
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);

    g_assert_cmpint(choose(d, 3, NULL, &r), ==, 1);
    d[0].sessions = 0;
    g_assert_cmpint(choose(d, 3, NULL, &r), ==, 0);
}

static void fill_uses_devices_in_order(void)
{
    gpb_policy_device d[] = {
        dev("a", GPUBALANCE_BACKEND_NVENC, 2, 3),
        dev("b", GPUBALANCE_BACKEND_NVENC, 0, 3),
    };
    gpb_policy_request r = request(GPUBALANCE_POLICY_FILL);

    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 0);
    d[0].sessions = 3;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 1);
}

static void order_decides_between_backends(void)
{
    gpb_policy_device d[] = {
        dev("sw", GPUBALANCE_BACKEND_SOFTWARE, 0, GPB_NO_LIMIT),
        dev("va", GPUBALANCE_BACKEND_VAAPI, 5, 6),
        dev("nv", GPUBALANCE_BACKEND_NVENC, 0, 3),
        dev("sim", GPUBALANCE_BACKEND_SIM, 0, GPB_NO_LIMIT),
    };
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);

    d[3].order_backend = GPUBALANCE_BACKEND_VAAPI; /* imitates=vaapi */
    g_assert_cmpint(choose(d, 4, NULL, &r), ==, 2);
    g_assert_cmpint(gpb_order_parse("vaapi,software,nvenc", &r.order), ==, 0);
    g_assert_cmpint(choose(d, 4, NULL, &r), ==, 3); /* the sim ranks with vaapi, and is emptier */
    d[3].excluded = true;
    g_assert_cmpint(choose(d, 4, NULL, &r), ==, 1);
    d[1].sessions = 6;
    g_assert_cmpint(choose(d, 4, NULL, &r), ==, 0);
    g_assert_cmpint(gpb_order_parse("nvenc", &r.order), ==, 0);
    d[2].sessions = 3;
    g_assert_cmpint(choose(d, 4, NULL, &r), ==, -1);
}

static void pool_limit_is_shared_by_its_devices(void)
{
    gpb_policy_device d[] = {
        dev("a", GPUBALANCE_BACKEND_NVENC, 2, GPB_NO_LIMIT),
        dev("b", GPUBALANCE_BACKEND_NVENC, 1, GPB_NO_LIMIT),
        dev("sw", GPUBALANCE_BACKEND_SOFTWARE, 0, GPB_NO_LIMIT),
    };
    gpb_policy_pool pools[] = {{.name = "geforce", .sessions = 3, .session_limit = 3}};
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);
    gpb_policy_result result;

    d[0].pool = d[1].pool = 0;
    gpb_policy_choose(d, 3, pools, &r, &result);
    g_assert_cmpint(result.device, ==, 2);
    gpb_assert_contains(result.rejected, "pool geforce has 3 of 3 sessions in use");
    pools[0].sessions = 2;
    g_assert_cmpint(choose(d, 3, pools, &r), ==, 1);
}

static void budget_limits_by_cost(void)
{
    gpb_policy_device d[] = {dev("va", GPUBALANCE_BACKEND_VAAPI, 3, GPB_NO_LIMIT)};
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);

    d[0].budget = 4;
    d[0].load = 3.5;
    g_assert_cmpint(choose(d, 1, NULL, &r), ==, -1);
    r.cost = 0.5;
    g_assert_cmpint(choose(d, 1, NULL, &r), ==, 0);
}

static void foreign_sessions_count_against_limits(void)
{
    gpb_policy_device d[] = {
        dev("a", GPUBALANCE_BACKEND_NVENC, 1, 3),
        dev("b", GPUBALANCE_BACKEND_NVENC, 1, 3),
    };
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);

    d[0].foreign_sessions = 1;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 1);
    d[1].foreign_sessions = 2;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 0);
    d[0].foreign_sessions = 2;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, -1);
}

static void unsupported_streams_are_told_apart_from_full(void)
{
    gpb_policy_device d[] = {dev("a", GPUBALANCE_BACKEND_NVENC, 0, 3)};
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);
    gpb_policy_result result;

    d[0].codecs = 1u << GPUBALANCE_CODEC_H264;
    r.codec = GPUBALANCE_CODEC_AV1;
    gpb_policy_choose(d, 1, NULL, &r, &result);
    g_assert_cmpint(result.outcome, ==, GPB_UNSUPPORTED);
    gpb_assert_contains(result.rejected, "a: codec not supported");
    r.codec = GPUBALANCE_CODEC_H264;
    r.width = 7680;
    gpb_policy_choose(d, 1, NULL, &r, &result);
    gpb_assert_contains(result.rejected, "resolution above its maximum");
    r.width = 1920;
    r.bit_depth = 10;
    d[0].ten_bit = false;
    gpb_policy_choose(d, 1, NULL, &r, &result);
    gpb_assert_contains(result.rejected, "no 10-bit support");
    d[0].ten_bit = true;
    d[0].sessions = 3;
    gpb_policy_choose(d, 1, NULL, &r, &result);
    g_assert_cmpint(result.outcome, ==, GPB_ALL_FULL);
}

static void cost_follows_the_formula(void)
{
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, 30);

    g_assert_cmpfloat_with_epsilon(gpubalance_stream_cost(s), 1.0, 1e-9);
    gpubalance_stream_set_size(s, 3840, 2160);
    gpubalance_stream_set_fps(s, 60);
    g_assert_cmpfloat_with_epsilon(gpubalance_stream_cost(s), 8.0, 1e-9);
    gpubalance_stream_set_fps(s, 0); /* unknown counts as 30 */
    g_assert_cmpfloat_with_epsilon(gpubalance_stream_cost(s), 4.0, 1e-9);
    gpubalance_stream_free(s);
}

/* ---- through the real ledger ------------------------------------------ */

static const char two_sims_in_a_pool[] = GPB_TEST_TWO_SIMS_IN_A_POOL_OF_3;

static void balanced_spreads_then_falls_back_to_software(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l[5];
    const char *want[] = {"sim:gpu0", "sim:gpu1", "sim:gpu0", "software", "software"};

    gpb_test_env(two_sims_in_a_pool);
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1280, 720, 30);
    for (int i = 0; i < 5; i++) {
        l[i] = gpb_test_acquire(ctx, s);
        g_assert_cmpstr(gpubalance_lease_device(l[i]), ==, want[i]);
    }
    g_assert_cmpint(gpubalance_lease_backend(l[0]), ==, GPUBALANCE_BACKEND_SIM);
    g_assert_cmpstr(gpubalance_lease_ffmpeg_encoder(l[0]), ==, "libx264");
    gpb_assert_contains(gpubalance_lease_reason(l[3]), "passed over sim:gpu0: pool geforce has 3 of 3 sessions in use");
    gpubalance_lease_release(l[1]);
    gpubalance_lease_release(l[3]);
    l[1] = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l[1]), ==, "sim:gpu1");
    for (int i = 0; i < 5; i++)
        if (i != 3)
            gpubalance_lease_release(l[i]);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void fill_policy_fills_first_device(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l[3];

    gpb_test_env("[general]\ndiscover=false\npolicy=fill\n"
                 "[device:a]\nbackend=sim\nmax-sessions=2\n"
                 "[device:b]\nbackend=sim\nmax-sessions=2\n");
    ctx = gpb_test_open();
    s = gpb_test_stream("hevc", 1920, 1080, 30);
    for (int i = 0; i < 3; i++)
        l[i] = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l[0]), ==, "sim:a");
    g_assert_cmpstr(gpubalance_lease_device(l[1]), ==, "sim:a");
    g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "sim:b");
    g_assert_cmpstr(gpubalance_lease_ffmpeg_encoder(l[2]), ==, "libx265");
    for (int i = 0; i < 3; i++)
        gpubalance_lease_release(l[i]);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void when_full_fail_reports_every_device(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *a, *b = NULL;

    a = gpb_test_start("[general]\ndiscover=false\nwhen-full=fail\norder=nvenc\n"
                       "[device:a]\nbackend=sim\nmax-sessions=1\n",
                       &ctx, &s);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &b), ==, GPUBALANCE_ERR_FULL);
    g_assert_null(b);
    gpb_assert_contains(gpubalance_last_error(), "sim:a: 1 of 1 sessions in use");
    gpb_assert_contains(gpubalance_last_error(), "when-full=fail");
    /* the stream's own option wins over the config */
    gpubalance_stream_set_when_full(s, "software");
    b = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(b), ==, "software");
    gpubalance_lease_release(a);
    gpubalance_lease_release(b);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static pid_t holder_pid;

/* Runs when the waiter is about to block: end the holder the hard way. */
static void kill_holder(void *data)
{
    int *calls = data;

    if ((*calls)++ == 0)
        kill(holder_pid, SIGKILL);
}

static void when_full_wait_wakes_when_a_holder_dies(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l = NULL;
    int ready[2], calls = 0;
    char *line;

    gpb_test_env("[general]\ndiscover=false\nwhen-full=wait\nwait-timeout=600\norder=nvenc\n"
                 "[device:a]\nbackend=sim\nmax-sessions=1\n");
    g_assert_cmpint(pipe(ready), ==, 0);
    holder_pid = fork();
    if (holder_pid == 0) {
        gpubalance_context *c = gpb_test_open();
        gpubalance_lease *held = gpb_test_acquire(c, gpb_test_stream("h264", 1920, 1080, 30));

        dprintf(ready[1], "%s\n", gpubalance_lease_device(held));
        for (;;)
            pause();
    }
    line = gpb_read_line(ready[0]);
    g_assert_cmpstr(line, ==, "sim:a");
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1920, 1080, 30);
    gpb_set_wait_hook(kill_holder, &calls);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, 0);
    gpb_set_wait_hook(NULL, NULL);
    g_assert_cmpint(calls, >=, 1); /* it really waited */
    g_assert_cmpstr(gpubalance_lease_device(l), ==, "sim:a");
    waitpid(holder_pid, NULL, 0);
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_free(line);
}

static void when_full_wait_times_out(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *a, *b = NULL;

    a = gpb_test_start("[general]\ndiscover=false\nwhen-full=wait\nwait-timeout=0.05\norder=nvenc\n"
                       "[device:a]\nbackend=sim\nmax-sessions=1\n",
                       &ctx, &s);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &b), ==, GPUBALANCE_ERR_TIMEOUT);
    gpb_assert_contains(gpubalance_last_error(), "no device freed up within 0.05 s");
    gpb_assert_contains(gpubalance_last_error(), "sim:a: 1 of 1 sessions in use");
    gpubalance_lease_release(a);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static const char enforcing_sim[] = "[general]\n"
                                    "discover=false\n"
                                    "order=nvenc,software\n"
                                    "learn-expiry=60\n"
                                    "[device:gpu0]\n"
                                    "backend=sim\n"
                                    "max-sessions=3\n"
                                    "enforce-sessions=2\n";

static gpubalance_lease *open_like_a_front_end(gpubalance_context *ctx, const gpubalance_stream *s)
{
    gpubalance_lease *l = gpb_test_acquire(ctx, s);

    while (gpubalance_lease_check_open(l) < 0)
        g_assert_cmpint(gpubalance_lease_report_failure(&l, GPUBALANCE_FAILURE_CAPACITY, gpubalance_last_error()), ==,
                        0);
    g_assert_cmpint(gpubalance_lease_mark_opened(l), ==, 0);
    return l;
}

static void refusal_falls_back_and_is_learned_by_the_next_process(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l[3];
    pid_t child;
    int wstatus;

    gpb_test_setup(enforcing_sim, &ctx, &s);
    l[0] = open_like_a_front_end(ctx, s);
    l[1] = open_like_a_front_end(ctx, s);
    l[2] = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "sim:gpu0"); /* max-sessions=3 allows it */
    g_assert_cmpint(gpubalance_lease_check_open(l[2]), ==, GPUBALANCE_ERR_REFUSED);
    gpb_assert_contains(gpubalance_last_error(), "enforce-sessions=2");
    g_assert_cmpint(gpubalance_lease_report_failure(&l[2], GPUBALANCE_FAILURE_CAPACITY, "out of memory (10)"), ==, 0);
    g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "software");
    g_assert_cmpint(gpubalance_lease_attempt(l[2]), ==, 2);
    g_assert_cmpint(gpb_test_learned_limit(ctx, "sim:gpu0"), ==, 2);

    /* Another process knows at once: its first placement is software. */
    child = fork();
    if (child == 0) {
        gpubalance_context *c = gpb_test_open();
        gpubalance_lease *x = gpb_test_acquire(c, s);

        _exit(strcmp(gpubalance_lease_device(x), "software") == 0 && gpubalance_lease_attempt(x) == 1 ? 0 : 1);
    }
    waitpid(child, &wstatus, 0);
    g_assert_true(WIFEXITED(wstatus));
    g_assert_cmpint(WEXITSTATUS(wstatus), ==, 0);
    for (int i = 0; i < 3; i++)
        gpubalance_lease_release(l[i]);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static uint64_t fake_now;

static uint64_t fake_clock(void)
{
    return fake_now;
}

static void learned_limit_expires(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l[3];

    fake_now = gpb_boottime_ns();
    gpb_set_clock(fake_clock);
    gpb_test_setup(enforcing_sim, &ctx, &s);
    l[0] = open_like_a_front_end(ctx, s);
    l[1] = open_like_a_front_end(ctx, s);
    l[2] = open_like_a_front_end(ctx, s); /* refused once, learned, software */
    g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "software");
    gpubalance_lease_release(l[2]);
    fake_now += 59ull * 1000000000ull;
    l[2] = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "software"); /* still learned */
    gpubalance_lease_release(l[2]);
    fake_now += 2ull * 1000000000ull; /* past learn-expiry=60 */
    g_assert_cmpint(gpb_test_learned_limit(ctx, "sim:gpu0"), ==, -1);
    l[2] = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "sim:gpu0"); /* tried again */
    for (int i = 0; i < 3; i++)
        gpubalance_lease_release(l[i]);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    gpb_set_clock(NULL);
}

/* Two cards of a pool hold leases l[0] and l[1]; a third lease is refused
 * by the driver for capacity (message): it falls back to software, not to
 * the pool's other card, the pool learns a limit of 2, and a fourth stream
 * goes straight to software. Releases the four leases. */
static void third_session_refused_teaches_the_pool(gpubalance_context *ctx, const gpubalance_stream *s,
                                                   gpubalance_lease *l[4], const char *message)
{
    l[2] = gpb_test_acquire(ctx, s);
    g_assert_cmpint(gpubalance_lease_report_failure(&l[2], GPUBALANCE_FAILURE_CAPACITY, message), ==, 0);
    /* the other card is not tried: the pool, not the card, is at its cap */
    g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "software");
    g_assert_cmpint(gpb_test_pool_learned_limit(ctx, "geforce"), ==, 2);
    l[3] = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l[3]), ==, "software");
    for (int i = 0; i < 4; i++)
        gpubalance_lease_release(l[i]);
}

static void pooled_refusal_teaches_the_pool(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l[4];

    /* Declared nvenc devices stand for real GeForce cards in one pool; the
     * test plays the driver and refuses the third session. */
    l[0] = gpb_test_start("[general]\ndiscover=false\norder=nvenc,software\n"
                          "[pool:geforce]\nmax-sessions=8\n"
                          "[device:g0]\nbackend=nvenc\ncuda-device=0\npool=geforce\n"
                          "[device:g1]\nbackend=nvenc\ncuda-device=1\npool=geforce\n",
                          &ctx, &s);
    l[1] = gpb_test_acquire(ctx, s);
    g_assert_cmpint(gpubalance_lease_cuda_ordinal(l[0]), ==, 0);
    g_assert_cmpint(gpubalance_lease_cuda_ordinal(l[1]), ==, 1);
    g_assert_cmpstr(gpubalance_lease_gst_encoder(l[0]), ==, "nvcudah264enc");
    third_session_refused_teaches_the_pool(ctx, s, l, "OpenEncodeSessionEx failed: out of memory (10)");
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

/* A pooled sim without enforce-sessions stands for a card of a pool whose
 * driver someone else plays (bench/fleet does): its refusal teaches the
 * pool, as an NVENC refusal would, so the other card is not tried. */
static void pooled_sim_refusal_teaches_the_pool(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l[4];

    gpb_test_setup("[general]\ndiscover=false\norder=nvenc,software\n[pool:geforce]\n"
                   "[device:g0]\nbackend=sim\npool=geforce\n[device:g1]\nbackend=sim\npool=geforce\n",
                   &ctx, &s);
    for (int i = 0; i < 2; i++)
        l[i] = gpb_test_acquire(ctx, s);
    third_session_refused_teaches_the_pool(ctx, s, l, "out of memory (10)");
    /* the pool learned, not the card */
    g_assert_cmpint(gpb_test_learned_limit(ctx, "sim:g0"), ==, -1);
    g_assert_cmpint(gpb_test_learned_limit(ctx, "sim:g1"), ==, -1);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void every_candidate_failing_lists_each_attempt(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l;

    l = gpb_test_start("[general]\ndiscover=false\norder=nvenc\nwhen-full=fail\n"
                       "[device:a]\nbackend=sim\n[device:b]\nbackend=sim\n",
                       &ctx, &s);
    g_assert_cmpint(gpubalance_lease_report_failure(&l, GPUBALANCE_FAILURE_OTHER, "bad preset"), ==, 0);
    g_assert_cmpint(gpubalance_lease_report_failure(&l, GPUBALANCE_FAILURE_UNAVAILABLE, "element missing"), ==,
                    GPUBALANCE_ERR_NO_CANDIDATE);
    g_assert_null(l);
    gpb_assert_contains(gpubalance_last_error(), "sim:a (libx264): bad preset");
    gpb_assert_contains(gpubalance_last_error(), "sim:b (libx264): element missing");
    /* OTHER was for that stream only; UNAVAILABLE sticks in this process */
    l = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l), ==, "sim:a");
    gpubalance_lease_release(l);
    gpubalance_stream_set_device(s, "sim:b");
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, GPUBALANCE_ERR_FULL);
    gpb_assert_contains(gpubalance_last_error(), "unavailable in this process: element missing");
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

/* n sim devices d0..d(n-1), one session each, then software. */
static char *many_sims_config(int n)
{
    GString *c = g_string_new("[general]\ndiscover=false\norder=nvenc,software\n[software]\nbudget=0\n");

    for (int i = 0; i < n; i++)
        g_string_append_printf(c, "[device:d%d]\nbackend=sim\nmax-sessions=1\n", i);
    return g_string_free(c, FALSE);
}

/* 255 declared devices plus software: the 64-bit masks that once capped
 * a host at 64 are gone. Every sim takes one stream, and a failure on a
 * device past index 64 is remembered for that stream. */
static void two_hundred_fifty_six_devices_each_take_a_stream(void)
{
    char *config = many_sims_config(GPB_MAX_DEVICES - 1);
    GHashTable *used = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    gpubalance_lease *l[GPB_MAX_DEVICES];
    gpubalance_context *ctx;
    gpubalance_stream *s;

    gpb_test_setup(config, &ctx, &s);
    for (int i = 0; i < GPB_MAX_DEVICES - 1; i++) {
        l[i] = gpb_test_acquire(ctx, s);
        g_assert_true(g_str_has_prefix(gpubalance_lease_device(l[i]), "sim:d"));
        g_assert_true(g_hash_table_add(used, g_strdup(gpubalance_lease_device(l[i]))));
    }
    g_assert_cmpstr(gpubalance_lease_device(l[GPB_MAX_DEVICES - 2]), ==, "sim:d254");
    l[GPB_MAX_DEVICES - 1] = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l[GPB_MAX_DEVICES - 1]), ==, "software");
    /* d254 is free again once its lease is re-placed, but failed for it */
    g_assert_cmpint(gpubalance_lease_report_failure(&l[GPB_MAX_DEVICES - 2], GPUBALANCE_FAILURE_OTHER, "bad preset"),
                    ==, 0);
    g_assert_cmpstr(gpubalance_lease_device(l[GPB_MAX_DEVICES - 2]), ==, "software");
    for (int i = 0; i < GPB_MAX_DEVICES; i++)
        gpubalance_lease_release(l[i]);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_hash_table_unref(used);
    g_free(config);
}

static void more_than_256_devices_is_a_clear_error(void)
{
    char *config = many_sims_config(GPB_MAX_DEVICES);
    gpubalance_context *ctx = NULL;

    gpb_test_env(config);
    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, GPUBALANCE_ERR_FULL);
    g_assert_null(ctx);
    gpb_assert_contains(gpubalance_last_error(), "too many devices (256 at most); software left out");
    g_free(config);
}

static void forced_device_is_used_or_named_as_missing(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l = NULL;

    gpb_test_setup(two_sims_in_a_pool, &ctx, &s);
    gpubalance_stream_set_device(s, "sim:gpu1");
    l = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l), ==, "sim:gpu1");
    gpubalance_lease_release(l);
    gpubalance_stream_set_device(s, "nvenc:7");
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, GPUBALANCE_ERR_NO_SUCH_DEVICE);
    gpb_assert_contains(gpubalance_last_error(), "device 'nvenc:7' does not exist here; devices: sim:gpu0");
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void unsupported_stream_is_a_clear_error(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l = NULL;

    gpb_test_env("[general]\ndiscover=false\nwhen-full=fail\n[software]\ncodecs=h264\n");
    ctx = gpb_test_open();
    s = gpb_test_stream("av1", 1920, 1080, 30);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, GPUBALANCE_ERR_UNSUPPORTED);
    gpb_assert_contains(gpubalance_last_error(),
                        "no device can encode av1 1920x1080 8-bit: software: codec not supported");
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void bad_stream_values_are_refused(void)
{
    gpubalance_stream *s;

    gpubalance_stream_new(&s);
    g_assert_cmpint(gpubalance_stream_set_size(s, 0, 1080), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    gpb_assert_contains(gpubalance_last_error(), "size 0x1080");
    g_assert_cmpint(gpubalance_stream_set_fps(s, -1), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(gpubalance_stream_set_bit_depth(s, 12), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(gpubalance_stream_set_policy(s, "random"), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    gpb_assert_contains(gpubalance_last_error(), "policy 'random' is not one of: balanced, fill");
    g_assert_cmpint(gpubalance_stream_set_order(s, "nvenc,cuda"), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    gpb_assert_contains(gpubalance_last_error(), "order entry 'cuda'");
    g_assert_cmpint(gpubalance_stream_set_when_full(s, "later"), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(gpubalance_codec_from_name("vp9"), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(gpubalance_codec_from_name("h265"), ==, GPUBALANCE_CODEC_HEVC);
    gpubalance_stream_free(s);
}

/* A foreign session counts as one unit while its size is unknown; once
 * the driver's utilisation measures the foreign streams, their measured
 * cost replaces that guess, both ways. */
static void measured_foreign_load_replaces_one_unit_per_session(void)
{
    gpb_policy_device d[] = {
        dev("a", GPUBALANCE_BACKEND_NVENC, 0, GPB_NO_LIMIT),
        dev("b", GPUBALANCE_BACKEND_NVENC, 0, GPB_NO_LIMIT),
    };
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);

    d[0].budget = d[1].budget = 32;
    d[0].load = 3;             /* ours: three 1080p30 */
    d[1].foreign_sessions = 1; /* one foreign session, size unknown */
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 1);
    d[1].foreign_load = 28.8; /* ...that keeps the encoder 90% busy */
    d[1].foreign_load_known = true;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 0);
    g_assert_cmpfloat_with_epsilon(gpb_policy_utilisation(&d[1], 1.0), 29.8 / 32, 1e-9);

    d[1].foreign_sessions = 6; /* six small foreign streams, 3% busy */
    d[1].foreign_load_known = false;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 0);
    d[1].foreign_load = 0.96;
    d[1].foreign_load_known = true;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 1);
    /* a budget refuses by measured load too */
    d[0].load = 31.5;
    d[1].foreign_load = 31.5;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, -1);
}

/* Devices of different sizes: the least utilised after adding is not
 * always the choice that keeps the group closest; balanced keeps the
 * spread smallest (found by bench/fleet on its mixed host). */
static void balanced_keeps_unlike_devices_closest(void)
{
    gpb_policy_device d[] = {
        dev("big", GPUBALANCE_BACKEND_NVENC, 4, GPB_NO_LIMIT),
        dev("small", GPUBALANCE_BACKEND_NVENC, 2, GPB_NO_LIMIT),
    };
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);
    gpb_policy_result result;

    d[0].budget = 32;
    d[0].load = 16; /* 50% */
    d[1].budget = 16;
    d[1].load = 6.4; /* 40% */
    r.cost = 4;
    /* big: 62.5% and 40%, spread 0.225; small: 50% and 65%, spread 0.15 */
    gpb_policy_choose(d, 2, NULL, &r, &result);
    g_assert_cmpint(result.device, ==, 1);
    /* the reason says what was compared, not "least loaded" (it is not) */
    g_assert_cmpstr(result.reason, ==,
                    "balanced: device with room leaving the smallest spread of utilisation in its group "
                    "(spread 0.15, its utilisation 0.65 after this stream)");
    /* with like devices it is the least utilised, as before */
    d[1].budget = 32;
    d[1].load = 12.8;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 1);
    d[1].load = 17;
    g_assert_cmpint(choose(d, 2, NULL, &r), ==, 0);
}

/* A GeForce pool has few sessions and much throughput: a small stream
 * that would take one of them goes to a later hardware backend with room,
 * a big one keeps the pool (found by bench/fleet on its GeForce host). */
static void small_streams_leave_capped_sessions_to_big_ones(void)
{
    gpb_policy_device d[] = {
        dev("g0", GPUBALANCE_BACKEND_NVENC, 1, GPB_NO_LIMIT),
        dev("g1", GPUBALANCE_BACKEND_NVENC, 1, GPB_NO_LIMIT),
        dev("va", GPUBALANCE_BACKEND_VAAPI, 0, GPB_NO_LIMIT),
    };
    gpb_policy_pool pools[] = {{"geforce", 2, 8}};
    gpb_policy_request r = request(GPUBALANCE_POLICY_BALANCED);
    gpb_policy_result result;

    d[0].pool = d[1].pool = 0;
    d[0].budget = d[1].budget = d[2].budget = 16;
    d[0].load = d[1].load = 1;
    /* 30 units left for 6 sessions: 5 per session */
    r.cost = 0.2; /* 480p30 */
    gpb_policy_choose(d, 3, pools, &r, &result);
    g_assert_cmpint(result.device, ==, 2);
    gpb_assert_contains(result.reason, "would take one of the last sessions of pool geforce");
    r.cost = 8; /* 4K60 */
    g_assert_cmpint(choose(d, 3, pools, &r), ==, 0);
    /* no room on VA-API: the pool takes the small stream after all */
    r.cost = 0.2;
    d[2].load = 16;
    g_assert_cmpint(choose(d, 3, pools, &r), ==, 0);
    /* fill keeps the order; so does a pool without budgets or cap */
    d[2].load = 0;
    r.policy = GPUBALANCE_POLICY_FILL;
    g_assert_cmpint(choose(d, 3, pools, &r), ==, 0);
    r.policy = GPUBALANCE_POLICY_BALANCED;
    pools[0].session_limit = GPB_NO_LIMIT;
    g_assert_cmpint(choose(d, 3, pools, &r), ==, 0);
    pools[0].session_limit = 8;
    d[1].budget = 0;
    g_assert_cmpint(choose(d, 3, pools, &r), !=, 2); /* stays on NVENC */
}

/* The device sets that decisions and the ledger walk: a walk visits
 * exactly the members, in order, across word boundaries, and an empty set
 * or one past its last member ends the walk. */
static void devset_walk_visits_exactly_its_members(void)
{
    static const int members[] = {0, 1, 63, 64, 65, 127, 128, 200, GPB_MAX_DEVICES - 1};
    gpb_devset set;
    int seen = 0;

    gpb_devset_clear(&set);
    g_assert_cmpint(gpb_devset_next(&set, 0), ==, -1);
    for (size_t i = 0; i < G_N_ELEMENTS(members); i++)
        gpb_devset_add(&set, members[i]);
    GPB_DEVSET_FOREACH (&set, i) {
        g_assert_cmpint(seen, <, (int)G_N_ELEMENTS(members));
        g_assert_cmpint(i, ==, members[seen]);
        seen++;
    }
    g_assert_cmpint(seen, ==, (int)G_N_ELEMENTS(members));
    g_assert_cmpint(gpb_devset_next(&set, 66), ==, 127);
    g_assert_cmpint(gpb_devset_next(&set, GPB_MAX_DEVICES), ==, -1);
    gpb_devset_remove(&set, 127);
    g_assert_false(gpb_devset_has(&set, 127));
    g_assert_cmpint(gpb_devset_next(&set, 66), ==, 128);
}

static const gpb_test_case cases[] = {
    GPB_TEST(balanced_picks_lowest_utilisation),
    GPB_TEST(devset_walk_visits_exactly_its_members),
    GPB_TEST(balanced_ties_go_to_fewer_sessions_then_lower_index),
    GPB_TEST(fill_uses_devices_in_order),
    GPB_TEST(order_decides_between_backends),
    GPB_TEST(pool_limit_is_shared_by_its_devices),
    GPB_TEST(budget_limits_by_cost),
    GPB_TEST(foreign_sessions_count_against_limits),
    GPB_TEST(unsupported_streams_are_told_apart_from_full),
    GPB_TEST(cost_follows_the_formula),
    GPB_TEST(balanced_spreads_then_falls_back_to_software),
    GPB_TEST(fill_policy_fills_first_device),
    GPB_TEST(when_full_fail_reports_every_device),
    GPB_TEST(when_full_wait_wakes_when_a_holder_dies),
    GPB_TEST(when_full_wait_times_out),
    GPB_TEST(refusal_falls_back_and_is_learned_by_the_next_process),
    GPB_TEST(learned_limit_expires),
    GPB_TEST(pooled_refusal_teaches_the_pool),
    GPB_TEST(every_candidate_failing_lists_each_attempt),
    GPB_TEST(forced_device_is_used_or_named_as_missing),
    GPB_TEST(unsupported_stream_is_a_clear_error),
    GPB_TEST(bad_stream_values_are_refused),
    GPB_TEST(pooled_sim_refusal_teaches_the_pool),
    GPB_TEST(balanced_keeps_unlike_devices_closest),
    GPB_TEST(small_streams_leave_capped_sessions_to_big_ones),
    GPB_TEST(measured_foreign_load_replaces_one_unit_per_session),
    GPB_TEST(two_hundred_fifty_six_devices_each_take_a_stream),
    GPB_TEST(more_than_256_devices_is_a_clear_error),
};

GPB_TEST_MAIN(cases)
