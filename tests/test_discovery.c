/* test_discovery.c - discovery of NVIDIA GPUs, VA-API nodes and foreign
 * load. The NVIDIA tests (GPB_TEST_WITH_STUBS) run against stand-in
 * driver libraries (tests/stubs, through LD_LIBRARY_PATH); the VA-API
 * tests against a directory of their own in place of /dev/dri
 * (gpb_discovery_set_roots). No test reaches a real driver: on a machine
 * with one, `gpubalance probe` shows what discovery found. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cost.h"
#include "fdinfo.h"
#include "helpers.h"
#include "inventory.h"
#include "internal.h"
#include "ledger.h"
#include "nvidia.h"
#include "util.h"

static bool stubs_loaded(void)
{
    const char *path = g_getenv("LD_LIBRARY_PATH");

    return path && strstr(path, "stubs");
}

static bool has_note(gpubalance_context *ctx, const char *text)
{
    for (size_t i = 0; i < gpubalance_context_n_notes(ctx); i++)
        if (strstr(gpubalance_context_note(ctx, i), text))
            return true;
    return false;
}

static void assert_note(gpubalance_context *ctx, const char *text)
{
    if (!has_note(ctx, text)) {
        for (size_t i = 0; i < gpubalance_context_n_notes(ctx); i++)
            g_printerr("note: %s\n", gpubalance_context_note(ctx, i));
        g_error("no note contains \"%s\"", text);
    }
}

static int count_lines(const char *path)
{
    gchar *text = NULL;
    int n = 0;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    g_free(text);
    return n;
}

/* A test environment with discovery on and an empty directory (DIR/dri)
 * in place of /dev/dri. */
static const char *discovery_env(void)
{
    const char *dir = gpb_test_env("[general]\ndiscover=true\n");
    char *empty = g_build_filename(dir, "dri", NULL);

    g_mkdir(empty, 0700);
    gpb_discovery_set_roots(empty, NULL);
    /* the stub tests' stand-in driver tree (tests/meson.build), else "/" */
    gpb_discovery_set_nvidia_root(g_getenv("GPB_TEST_NVIDIA_ROOT"));
    g_free(empty);
    return dir;
}

/* Discovery found nothing usable of one backend: it says why in a note,
 * and the inventory has no device of that backend (the context still
 * opens). */
static void assert_note_and_no_device(gpubalance_backend backend, const char *note)
{
    gpubalance_context *ctx = gpb_test_open();
    gpubalance_snapshot *snap;

    assert_note(ctx, note);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++)
        g_assert_cmpint(gpubalance_snapshot_device(snap, i)->backend, !=, backend);
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);
}

/* The NVIDIA root: a tree with the driver's control node (the fixture),
 * or an empty one: a host without the NVIDIA driver. */
static void set_nvidia_root(const char *test_dir, bool with_driver)
{
    char *root = with_driver ? g_build_filename(g_getenv("GPB_FIXTURES"), "nvidia-root", NULL)
                             : g_build_filename(test_dir, "no-nvidia-root", NULL);

    if (!with_driver)
        g_mkdir_with_parents(root, 0700);
    gpb_discovery_set_nvidia_root(root);
    g_free(root);
}

/* The stand-in libraries would report a GPU; on a host without the
 * driver's device node they are never looked for. */
static void no_nvidia_driver_skips_the_library_search(void)
{
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    const char *dir;

    g_assert_true(stubs_loaded());
    dir = discovery_env();
    g_setenv("FAKE_NVML_GPUS", "1", TRUE);
    set_nvidia_root(dir, false);
    ctx = gpb_test_open();
    assert_note(ctx, "nvenc: no NVIDIA devices: no NVIDIA driver loaded (neither ");
    assert_note(ctx, "dev/nvidiactl nor ");
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++)
        g_assert_cmpint(gpubalance_snapshot_device(snap, i)->backend, !=, GPUBALANCE_BACKEND_NVENC);
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);
}

/* GPUBALANCE_NVIDIA_ROOT and GPUBALANCE_DRI_ROOT are test hooks: only a
 * test build's library (-Dtest_hooks=true) reads them, and a root set by
 * a test comes first. */
static void discovery_root_variables_are_read_only_by_test_builds(void)
{
    gpb_discovery_set_nvidia_root(NULL);
    g_setenv("GPUBALANCE_NVIDIA_ROOT", "/from/the/environment", TRUE);
    g_assert_cmpstr(gpb_discovery_nvidia_root(), ==, GPB_TEST_HOOKS_BUILT ? "/from/the/environment" : "/");
    gpb_discovery_set_nvidia_root("/set/by/a/test");
    g_assert_cmpstr(gpb_discovery_nvidia_root(), ==, "/set/by/a/test");
    gpb_discovery_set_nvidia_root(NULL);
    g_unsetenv("GPUBALANCE_NVIDIA_ROOT");
    g_assert_cmpstr(gpb_discovery_nvidia_root(), ==, "/");

    gpb_discovery_set_roots(NULL, NULL);
    g_setenv("GPUBALANCE_DRI_ROOT", "/dri/from/the/environment", TRUE);
    g_assert_cmpstr(gpb_discovery_dri_dir(), ==, GPB_TEST_HOOKS_BUILT ? "/dri/from/the/environment" : "/dev/dri");
    gpb_discovery_set_roots("/dri/set/by/a/test", NULL);
    g_assert_cmpstr(gpb_discovery_dri_dir(), ==, "/dri/set/by/a/test");
    gpb_discovery_set_roots(NULL, NULL);
    g_unsetenv("GPUBALANCE_DRI_ROOT");
    g_assert_cmpstr(gpb_discovery_dri_dir(), ==, "/dev/dri");
}

static void no_nvidia_libraries_is_a_note(void)
{
    void *real = dlopen("libnvidia-ml.so.1", RTLD_LAZY);

    if (real)
        gpb_test_skip("this machine has an NVIDIA driver (libnvidia-ml.so.1 loads)");
    set_nvidia_root(discovery_env(), true); /* a driver node: the libraries are sought */
    assert_note_and_no_device(GPUBALANCE_BACKEND_NVENC, "nvenc: no NVIDIA devices: libnvidia-ml.so.1 not found");
}

static void libraries_but_no_gpu_is_a_note(void)
{
    g_assert_true(stubs_loaded());
    discovery_env();
    g_setenv("FAKE_NVML_GPUS", "0", TRUE);
    assert_note_and_no_device(GPUBALANCE_BACKEND_NVENC,
                              "nvenc: no NVIDIA devices: NVML (driver 535.104.05) sees no GPU");
}

static void driver_library_mismatch_is_a_note(void)
{
    g_assert_true(stubs_loaded());
    discovery_env();
    g_setenv("FAKE_NVML_GPUS", "1", TRUE);
    g_setenv("FAKE_NVML_INIT_FAIL", "18", TRUE);
    assert_note_and_no_device(GPUBALANCE_BACKEND_NVENC,
                              "nvmlInit failed: RM has detected an NVML/RM version mismatch (18)");
}

static void gpus_are_found_with_uuid_pci_and_cuda_ordinal(void)
{
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    const gpubalance_device_info *d0, *d1;

    g_assert_true(stubs_loaded());
    discovery_env();
    g_setenv("FAKE_NVML_GPUS", "2", TRUE);
    g_setenv("FAKE_NVML_BRANDS", "5,2", TRUE); /* a GeForce and a Tesla */
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    /* CUDA lists them in reverse: ordinal 0 is NVML's second GPU */
    d0 = gpb_test_device(snap, "nvenc:0");
    d1 = gpb_test_device(snap, "nvenc:1");
    g_assert_nonnull(d0);
    g_assert_nonnull(d1);
    g_assert_cmpstr(d0->gpu_uuid, ==, "GPU-00000001-fake-4000-8000-000000000001");
    g_assert_cmpstr(d0->pci_bus_id, ==, "00000000:65:00.0");
    g_assert_cmpint(d0->cuda_ordinal, ==, 0);
    g_assert_cmpstr(d1->gpu_uuid, ==, "GPU-00000000-fake-4000-8000-000000000000");
    g_assert_cmpstr(d1->pci_bus_id, ==, "00000000:17:00.0");
    g_assert_cmpstr(d1->name, ==, "NVIDIA Fake GPU 0");
    g_assert_cmpuint(d1->codecs, ==, 3u); /* H.264 and HEVC, from the probe */
    g_assert_null(d1->not_offered_why);
    /* only the GeForce joins the per-system pool, capped by driver 535 */
    g_assert_null(d0->pool);
    g_assert_cmpstr(d1->pool, ==, "geforce");
    g_assert_cmpint(gpubalance_snapshot_pool(snap, 0)->max_sessions, ==, 5);
    gpubalance_snapshot_free(snap);
    assert_note(ctx, "nvenc:1: NVIDIA Fake GPU 0, GPU-00000000-fake-4000-8000-000000000000, PCI 00000000:17:00.0, "
                     "CUDA ordinal 1, driver 535.104.05: NVENC available [probed in");
    gpubalance_context_close(ctx);
}

#define FAKE_UUID_0 "GPU-00000000-fake-4000-8000-000000000000"
#define FAKE_UUID_1 "GPU-00000001-fake-4000-8000-000000000001"

/* NVML sees two GPUs, CUDA only the second (as CUDA_VISIBLE_DEVICES
 * would): the hidden one is a note, never a device, and no lease lands on
 * it however many are asked for. */
static void gpu_hidden_from_cuda_is_not_offered(void)
{
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    gpubalance_stream *s;
    gpubalance_lease *l[4];
    int nvenc_devices = 0;

    g_assert_true(stubs_loaded());
    discovery_env();
    g_setenv("FAKE_NVML_GPUS", "2", TRUE);
    g_setenv("FAKE_NVML_BRANDS", "2,2", TRUE); /* no pool cap in the way */
    g_setenv("FAKE_CUDA_HIDE", "0", TRUE);
    ctx = gpb_test_open();
    assert_note(ctx, "NVIDIA Fake GPU 0 (" FAKE_UUID_0 ", PCI 00000000:17:00.0) is not visible to CUDA here");
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++) {
        const gpubalance_device_info *d = gpubalance_snapshot_device(snap, i);

        if (d->backend != GPUBALANCE_BACKEND_NVENC)
            continue;
        nvenc_devices++;
        g_assert_cmpstr(d->id, ==, "nvenc:0"); /* the visible GPU, as CUDA numbers it */
        g_assert_cmpstr(d->gpu_uuid, ==, FAKE_UUID_1);
        g_assert_cmpint(d->cuda_ordinal, ==, 0);
    }
    g_assert_cmpint(nvenc_devices, ==, 1);
    gpubalance_snapshot_free(snap);
    s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_stream_set_order(s, "nvenc");
    for (size_t i = 0; i < G_N_ELEMENTS(l); i++) {
        l[i] = gpb_test_acquire(ctx, s);
        g_assert_cmpstr(gpubalance_lease_gpu_uuid(l[i]), ==, FAKE_UUID_1);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(l); i++)
        gpubalance_lease_release(l[i]);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void gpu_without_nvenc_is_listed_and_never_offered(void)
{
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    gpubalance_stream *s;
    gpubalance_lease *l = NULL;
    const gpubalance_device_info *h100;

    g_assert_true(stubs_loaded());
    discovery_env();
    g_setenv("FAKE_NVML_GPUS", "1", TRUE);
    g_setenv("FAKE_NVML_BRANDS", "2", TRUE);
    g_setenv("FAKE_NVENC_NO_ENCODER", "0", TRUE);
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    h100 = gpb_test_device(snap, "nvenc:0");
    g_assert_nonnull(h100);
    g_assert_cmpuint(h100->codecs, ==, 0);
    gpb_assert_contains(h100->not_offered_why,
                        "no NVENC: nvEncOpenEncodeSessionEx returned NV_ENC_ERR_UNSUPPORTED_DEVICE (2)");
    gpubalance_snapshot_free(snap);
    s = gpb_test_stream("h264", 1920, 1080, 30);
    l = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l), ==, "software");
    gpubalance_lease_release(l);
    gpubalance_stream_set_device(s, "nvenc:0");
    gpubalance_stream_set_when_full(s, "fail");
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, GPUBALANCE_ERR_UNSUPPORTED);
    gpb_assert_contains(gpubalance_last_error(), "nvenc:0: codec not supported");
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

/* Rewrites the cached probe key of the device keyed ledger_key, as a
 * cache written in another boot would read. */
static void age_probe_cache(const char *ledger_key)
{
    gpb_ledger *ledger;
    gpb_device_record *r;
    char *bar;
    int index;

    g_assert_cmpint(gpb_ledger_open(NULL, &ledger), ==, 0);
    g_assert_cmpint(gpb_ledger_lock(ledger), ==, 0);
    index = gpb_ledger_device_index(ledger, ledger_key, GPUBALANCE_BACKEND_NVENC);
    r = gpb_ledger_device(ledger, index);
    bar = strrchr(r->probe_key, '|');
    g_assert_nonnull(bar);
    g_strlcpy(bar + 1, "00000000-another-boot", sizeof(r->probe_key) - (size_t)(bar + 1 - r->probe_key));
    gpb_ledger_unlock(ledger);
    gpb_ledger_close(ledger);
}

static void probe_is_cached_per_uuid_driver_and_boot(void)
{
    const char *dir;
    char *log;

    g_assert_true(stubs_loaded());
    dir = discovery_env();
    log = g_build_filename(dir, "nvenc.log", NULL);
    g_setenv("FAKE_NVML_GPUS", "2", TRUE);
    g_setenv("FAKE_NVENC_LOG", log, TRUE);

    gpubalance_context_close(gpb_test_open()); /* miss: probes both GPUs */
    g_assert_cmpint(count_lines(log), ==, 2);
    gpubalance_context *ctx = gpb_test_open(); /* hit: no probe */
    g_assert_cmpint(count_lines(log), ==, 2);
    assert_note(ctx, "[cached verdict of this boot and driver, no probe]");
    gpubalance_context_close(ctx);

    g_setenv("FAKE_NVIDIA_DRIVER", "550.54.14", TRUE); /* new driver: miss */
    gpubalance_context_close(gpb_test_open());
    g_assert_cmpint(count_lines(log), ==, 4);
    gpubalance_context_close(gpb_test_open());
    g_assert_cmpint(count_lines(log), ==, 4);

    age_probe_cache("nvenc@GPU-00000000-fake-4000-8000-000000000000"); /* another boot: miss for that GPU */
    gpubalance_context_close(gpb_test_open());
    g_assert_cmpint(count_lines(log), ==, 5);

    g_assert_cmpint(gpubalance_context_open_with_flags(NULL, GPUBALANCE_OPEN_REFRESH_PROBES, &ctx), ==, 0);
    g_assert_cmpint(count_lines(log), ==, 7); /* probe --refresh */
    gpubalance_context_close(ctx);
    g_free(log);
}

static void probe_holds_a_lease_while_its_session_is_open(void)
{
    const char *dir;
    char *seen, *quiet, *command;
    gchar *text = NULL;

    g_assert_true(stubs_loaded());
    dir = discovery_env();
    seen = g_build_filename(dir, "during-probe.json", NULL);
    quiet = g_build_filename(dir, "quiet.conf", NULL);
    g_assert_true(g_file_set_contents(quiet, "[general]\ndiscover=false\n", -1, NULL));
    command = g_strdup_printf("GPUBALANCE_CONFIG=%s %s status --json > %s", quiet, g_getenv("GPUBALANCE_BIN"), seen);
    g_setenv("FAKE_NVML_GPUS", "1", TRUE);
    g_setenv("FAKE_NVENC_DURING_OPEN", command, TRUE);
    gpubalance_context_close(gpb_test_open());
    g_assert_true(g_file_get_contents(seen, &text, NULL, NULL));
    gpb_assert_contains(text, "\"label\" : \"gpubalance nvenc probe\"");
    gpb_assert_contains(text, "\"device\" : \"nvenc@GPU-00000000-fake-4000-8000-000000000000\"");
    g_free(text);
    g_free(command);
    g_free(quiet);
    g_free(seen);
}

static void consumer_cap_follows_driver_version(void)
{
    static const struct {
        const char *version;
        int cap;
    } table[] = {
        {"470.256.02", 3}, {"525.147.05", 3}, {"529.99", 3},    {"530.41.03", 5}, {"545.29.06", 5},
        {"549.0", 5},      {"550.54.14", 8},  {"580.65.06", 8}, {"garbage", 3},   {NULL, 3},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
        g_assert_cmpint(gpb_nvidia_consumer_cap(table[i].version), ==, table[i].cap);
    g_assert_true(gpb_nvidia_brand_is_consumer(5));   /* GeForce */
    g_assert_true(gpb_nvidia_brand_is_consumer(15));  /* GeForce RTX */
    g_assert_false(gpb_nvidia_brand_is_consumer(2));  /* Tesla */
    g_assert_false(gpb_nvidia_brand_is_consumer(14)); /* NVIDIA (datacenter) */
}

static void config_and_learning_override_the_driver_cap(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l[3];

    g_assert_true(stubs_loaded());
    discovery_env();
    g_assert_true(g_file_set_contents(g_getenv("GPUBALANCE_CONFIG"),
                                      "[general]\ndiscover=true\n[pool:geforce]\nmax-sessions=12\n", -1, NULL));
    g_setenv("FAKE_NVML_GPUS", "1", TRUE);
    g_setenv("FAKE_NVIDIA_DRIVER", "525.1", TRUE); /* would be 3 */
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1920, 1080, 30);
    for (int i = 0; i < 3; i++) {
        l[i] = gpb_test_acquire(ctx, s);
        g_assert_cmpstr(gpubalance_lease_device(l[i]), ==, "nvenc:0"); /* 12, not 3 */
    }
    g_assert_cmpint(gpubalance_lease_report_failure(&l[2], GPUBALANCE_FAILURE_CAPACITY, "out of memory (10)"), ==, 0);
    g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "software");
    g_assert_cmpint(gpb_test_pool_learned_limit(ctx, "geforce"), ==, 2);
    for (int i = 0; i < 3; i++)
        gpubalance_lease_release(l[i]);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void foreign_nvenc_sessions_come_from_nvml(void)
{
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    gpubalance_stream *s;
    gpubalance_lease *l;

    g_assert_true(stubs_loaded());
    discovery_env();
    g_setenv("FAKE_NVML_GPUS", "1", TRUE);
    g_setenv("FAKE_NVML_SESSIONS", "3", TRUE); /* another program holds 3 */
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1920, 1080, 30);
    l = gpb_test_acquire(ctx, s); /* refreshes foreign load first */
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpint(gpb_test_device(snap, "nvenc:0")->foreign_sessions, ==, 3);
    g_assert_cmpint(gpubalance_snapshot_pool(snap, 0)->sessions, ==, 4);
    gpubalance_snapshot_free(snap);
    /* pool cap for driver 535 is 5: 3 foreign + ours = 4, one more fits,
     * then the next goes to software */
    gpubalance_lease *m = gpb_test_acquire(ctx, s);
    gpubalance_lease *n = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(m), ==, "nvenc:0");
    g_assert_cmpstr(gpubalance_lease_device(n), ==, "software");
    gpubalance_lease_release(l);
    gpubalance_lease_release(m);
    gpubalance_lease_release(n);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void no_render_nodes_is_a_note(void)
{
    char *note;

    discovery_env();
    note = g_strdup_printf("vaapi: no render nodes in %s", gpb_discovery_dri_dir());
    assert_note_and_no_device(GPUBALANCE_BACKEND_VAAPI, note);
    g_free(note);
}

static void render_node_that_is_not_a_gpu_is_listed_not_offered(void)
{
    const char *dir = discovery_env();
    char *node = g_build_filename(gpb_discovery_dri_dir(), "renderD128", NULL);
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    const gpubalance_device_info *d;

    (void)dir;
    g_assert_true(g_file_set_contents(node, "", 0, NULL));
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    d = gpb_test_device(snap, "vaapi:renderD128");
    g_assert_nonnull(d);
    g_assert_nonnull(d->not_offered_why);
    g_assert_cmpstr(d->render_node, ==, node);
    gpubalance_snapshot_free(snap);
    assert_note(ctx, "vaapi:renderD128:");
    gpubalance_context_close(ctx);
    g_free(node);
}

static char *fixture(const char *name)
{
    char *path = g_build_filename(g_getenv("GPB_FIXTURES"), "fdinfo", name, NULL);
    gchar *text = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_free(path);
    return text;
}

static void fdinfo_of_each_driver_is_parsed(void)
{
    gpb_drm_client c;
    char *text;

    text = fixture("i915.txt");
    g_assert_true(gpb_fdinfo_parse(text, &c));
    g_assert_cmpstr(c.driver, ==, "i915");
    g_assert_cmpstr(c.pdev, ==, "0000:00:02.0");
    g_assert_cmpuint(c.client_id, ==, 7);
    g_assert_cmpuint(c.video, ==, 5000000); /* not video-enhance, not capacity */
    g_free(text);
    text = fixture("amdgpu.txt");
    g_assert_true(gpb_fdinfo_parse(text, &c));
    g_assert_cmpuint(c.client_id, ==, 34);
    g_assert_cmpuint(c.video, ==, 2500000); /* enc + enc_1, not dec */
    g_free(text);
    text = fixture("xe.txt");
    g_assert_true(gpb_fdinfo_parse(text, &c));
    g_assert_cmpuint(c.video, ==, 8800000); /* cycles-vcs, not total-cycles */
    g_free(text);
    text = fixture("not-drm.txt");
    g_assert_false(gpb_fdinfo_parse(text, &c));
    g_free(text);
}

/* text with the first `from` replaced by `to`, newly allocated */
static char *replaced(const char *text, const char *from, const char *to)
{
    gchar **parts = g_strsplit(text, from, 2);
    char *result = g_strjoinv(to, parts);

    g_strfreev(parts);
    return result;
}

/* proc/PID/fd/FD -> node, proc/PID/fdinfo/FD = text */
static void fake_process(const char *proc, const char *pid, const char *fd, const char *target, const char *text)
{
    char *fd_dir = g_build_filename(proc, pid, "fd", NULL);
    char *info_dir = g_build_filename(proc, pid, "fdinfo", NULL);
    char *link = g_build_filename(fd_dir, fd, NULL);
    char *info = g_build_filename(info_dir, fd, NULL);

    g_mkdir_with_parents(fd_dir, 0700);
    g_mkdir_with_parents(info_dir, 0700);
    g_unlink(link);
    g_assert_cmpint(symlink(target, link), ==, 0);
    g_assert_true(g_file_set_contents(info, text, -1, NULL));
    g_free(fd_dir);
    g_free(info_dir);
    g_free(link);
    g_free(info);
}

static void fdinfo_counts_clients_whose_video_use_advances(void)
{
    const char *dir = gpb_test_env(NULL);
    char *proc = g_build_filename(dir, "proc", NULL);
    GArray *first = g_array_new(FALSE, TRUE, sizeof(gpb_drm_client));
    GArray *second = g_array_new(FALSE, TRUE, sizeof(gpb_drm_client));
    char *i915 = fixture("i915.txt");
    char *idle_video = replaced(i915, "5000000 ns", "0 ns");
    char *idle = replaced(idle_video, "drm-client-id:\t7", "drm-client-id:\t8");
    char *twice = replaced(i915, "drm-client-id:\t7", "drm-client-id:\t9");
    char *busier;
    const char *node = "/dev/dri/renderD128";

    /* pid 100 encodes; pid 200 holds the node idle (video 0); pid 300 has
     * it open twice through one client; pid 400 uses another node */
    fake_process(proc, "100", "5", node, i915);
    fake_process(proc, "200", "9", node, idle);
    fake_process(proc, "300", "3", node, twice);
    fake_process(proc, "300", "4", node, twice);
    fake_process(proc, "400", "3", "/dev/dri/renderD129", i915);
    gpb_fdinfo_scan(proc, node, "0000:00:02.0", first);
    g_assert_cmpuint(first->len, ==, 3);
    g_assert_cmpint(gpb_fdinfo_count_active(NULL, first), ==, 0); /* first look */

    busier = replaced(i915, "5000000", "5000999");
    fake_process(proc, "100", "5", node, busier); /* advanced */
    gpb_fdinfo_scan(proc, node, "0000:00:02.0", second);
    g_assert_cmpint(gpb_fdinfo_count_active(first, second), ==, 1);
    g_array_unref(first);
    g_array_unref(second);
    g_free(i915);
    g_free(idle_video);
    g_free(idle);
    g_free(twice);
    g_free(busier);
    g_free(proc);
}

#ifdef GPB_HAVE_VAAPI
static uint64_t scan_clock_ns;

static uint64_t scan_clock(void)
{
    return scan_clock_ns;
}

/* A child that proves the header lock is free while the parent's fdinfo
 * scan is inside a read: it opens the FIFO the scan reads (which blocks
 * until the scan opens it), places a stream of its own (which needs the
 * header lock), then lets the scan go on. */
static G_GNUC_NORETURN void place_during_the_scan(const char *fifo, const char *text)
{
    int fd = open(fifo, O_WRONLY);
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l;

    if (fd < 0 || gpubalance_context_open(NULL, &ctx) < 0)
        _exit(2);
    gpubalance_stream_new(&s);
    if (gpubalance_lease_acquire(ctx, s, &l) < 0)
        _exit(3);
    gpubalance_lease_release(l);
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        _exit(4);
    close(fd);
    _exit(0);
}

/* The foreign-load scan of a VA-API node runs outside the header lock:
 * another process places a stream while the scan is blocked reading a
 * process's fdinfo (a FIFO here). Were the lock held, the child would
 * wait for it and the scan for the child: the test would time out. */
static void fdinfo_scan_runs_outside_the_header_lock(void)
{
    const char *dir = gpb_test_env("[general]\ndiscover=false\norder=vaapi,software\n");
    char *proc = g_build_filename(dir, "proc", NULL);
    char *fifo = g_build_filename(proc, "100", "fdinfo", "5", NULL);
    char *i915 = fixture("i915.txt");
    const char *node = "/dev/dri/renderD128";
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l;
    gpb_device *d;
    pid_t child;
    int status;

    fake_process(proc, "100", "5", node, "");
    g_assert_cmpint(g_unlink(fifo), ==, 0);
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    gpb_discovery_set_roots(NULL, proc);
    scan_clock_ns = gpb_boottime_ns();
    gpb_set_clock(scan_clock);
    ctx = gpb_test_open();
    d = gpb_vaapi_device_new("vaapi:renderD128", node, "0000:00:02.0", 1u << GPUBALANCE_CODEC_H264);
    d->budget = 16;
    g_assert_cmpint(gpb_inventory_add(ctx->inventory, d), >=, 0);
    g_assert_cmpint(gpb_ledger_lock(ctx->ledger), ==, 0);
    d->ledger_index = gpb_ledger_device_index(ctx->ledger, d->ledger_key, d->backend);
    gpb_ledger_unlock(ctx->ledger);
    g_assert_cmpint(d->ledger_index, >=, 0);
    s = gpb_test_stream("h264", 1920, 1080, 30);
    l = gpb_test_acquire(ctx, s); /* a first request: no look yet */
    g_assert_cmpstr(gpubalance_lease_device(l), ==, "vaapi:renderD128");
    gpubalance_lease_release(l);
    child = fork();
    g_assert_cmpint(child, >=, 0);
    if (child == 0)
        place_during_the_scan(fifo, i915);
    scan_clock_ns += 2 * GPB_FOREIGN_REFRESH_NS; /* the foreign load is due */
    l = gpb_test_acquire(ctx, s);                /* scans, through the FIFO */
    gpubalance_lease_release(l);
    g_assert_cmpint(waitpid(child, &status, 0), ==, child);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    gpb_set_clock(NULL);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_free(i915);
    g_free(fifo);
    g_free(proc);
}
#else
static void fdinfo_scan_runs_outside_the_header_lock(void)
{
    gpb_test_skip("built without VA-API");
}
#endif

static void software_budget_follows_the_core_count(void)
{
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    double want = MAX(1.0, sysconf(_SC_NPROCESSORS_ONLN) / 2.0);

    gpb_test_env("[general]\ndiscover=false\n");
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpfloat(gpubalance_snapshot_device(snap, 0)->budget, ==, want);
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);
    gpb_test_env("[general]\ndiscover=false\n[software]\nbudget=0\n");
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpfloat(gpubalance_snapshot_device(snap, 0)->budget, ==, 0); /* no limit */
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);
}

static void default_budget_tables(void)
{
    static const struct {
        int architecture;
        int engines;
        const char *name;
        double budget;
    } nvenc[] = {
        {GPB_NVML_ARCH_KEPLER, 1, "NVIDIA GeForce GTX 680", 4},
        {GPB_NVML_ARCH_PASCAL, 2, "NVIDIA GeForce GTX 1080", 16},
        {GPB_NVML_ARCH_PASCAL, 0, "NVIDIA GeForce GTX 1070", 16}, /* engines by name */
        {GPB_NVML_ARCH_TURING, 1, "Tesla T4", 16},
        {GPB_NVML_ARCH_AMPERE, 0, "NVIDIA A10", 16}, /* not listed: 1 */
        {GPB_NVML_ARCH_ADA, 2, "NVIDIA GeForce RTX 4090", 32},
        {GPB_NVML_ARCH_ADA, 0, "NVIDIA GeForce RTX 4070 Ti", 32},
        {GPB_NVML_ARCH_ADA, 0, "NVIDIA L4", 32},
        {GPB_NVML_ARCH_ADA, 0, "NVIDIA L40S", 48},
        {GPB_NVML_ARCH_ADA, 0, "NVIDIA RTX 6000 Ada Generation", 48},
        {GPB_NVML_ARCH_HOPPER, 0, "NVIDIA H100 80GB HBM3", 0}, /* no NVENC */
        {GPB_NVML_ARCH_BLACKWELL, 3, "NVIDIA GeForce RTX 5090", 48},
        {99, 2, "a future GPU", 0}, /* unknown: sessions only */
    };

    for (size_t i = 0; i < G_N_ELEMENTS(nvenc); i++) {
        double got = gpb_nvenc_default_budget(nvenc[i].architecture, nvenc[i].engines, nvenc[i].name);

        if (got != nvenc[i].budget)
            g_error("%s: budget %g, want %g", nvenc[i].name, got, nvenc[i].budget);
    }
    g_assert_cmpint(gpb_nvenc_engines_by_name("NVIDIA L40"), ==, 3);
    g_assert_cmpint(gpb_nvenc_engines_by_name("NVIDIA L4"), ==, 2);
    g_assert_cmpint(gpb_nvenc_engines_by_name(NULL), ==, 0);
    g_assert_cmpfloat(gpb_vaapi_default_budget("i915", 0x8086, 0x56c1, 16), ==, 20); /* Flex 140 */
    g_assert_cmpfloat(gpb_vaapi_default_budget("i915", 0x8086, 0x56c0, 16), ==, 20); /* Flex 170 */
    g_assert_cmpfloat(gpb_vaapi_default_budget("xe", 0x8086, 0x56a5, 16), ==, 20);   /* Arc A380 */
    g_assert_cmpfloat(gpb_vaapi_default_budget("i915", 0x8086, 0x56c3, 16), ==, 16); /* past ATS-M */
    g_assert_cmpfloat(gpb_vaapi_default_budget("i915", 0x8086, 0x5698, 16), ==, 16); /* between ranges */
    g_assert_cmpfloat(gpb_vaapi_default_budget("i915", 0x8086, 0x4680, 16), ==, 16); /* UHD 770: default */
    g_assert_cmpfloat(gpb_vaapi_default_budget("amdgpu", 0x1002, 0x73ff, 12), ==, 12);
    /* the correction: what the driver sees beyond our own streams */
    g_assert_cmpfloat_with_epsilon(gpb_foreign_load_from_utilisation(0.5, 32, 4), 12, 1e-9);
    g_assert_cmpfloat(gpb_foreign_load_from_utilisation(0.1, 32, 4), ==, 0); /* ours overestimated */
    g_assert_cmpfloat(gpb_foreign_load_from_utilisation(1.7, 10, 0), ==, 10);
    g_assert_cmpfloat(gpb_foreign_load_decode(0), ==, -1); /* a zeroed record: unknown */
    g_assert_cmpfloat(gpb_foreign_load_decode(gpb_foreign_load_encode(0)), ==, 0);
    g_assert_cmpfloat(gpb_foreign_load_decode(gpb_foreign_load_encode(12.345)), ==, 12.345);
}

static void discovered_gpu_budget_follows_architecture_and_engines(void)
{
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;

    g_assert_true(stubs_loaded());
    discovery_env();
    g_setenv("FAKE_NVML_GPUS", "2", TRUE);
    g_setenv("FAKE_NVML_ARCH", "8,6", TRUE); /* NVML GPU 0 Ada, GPU 1 Turing */
    ctx = gpb_test_open();                   /* the stub NVENC reports 2 engines */
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpfloat(gpb_test_device(snap, "nvenc:1")->budget, ==, 32); /* NVML GPU 0 */
    g_assert_cmpfloat(gpb_test_device(snap, "nvenc:0")->budget, ==, 32);
    gpubalance_snapshot_free(snap);
    assert_note(ctx, "budget 32 (2 NVENC)");
    gpubalance_context_close(ctx);

    /* the config overrides the default */
    g_assert_true(g_file_set_contents(g_getenv("GPUBALANCE_CONFIG"),
                                      "[general]\ndiscover=true\n[device:g]\nbackend=nvenc\ncuda-device=1\nbudget=10\n",
                                      -1, NULL));
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpfloat(gpb_test_device(snap, "nvenc:1")->budget, ==, 10);
    g_assert_cmpfloat(gpb_test_device(snap, "nvenc:0")->budget, ==, 32);
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);

    /* a driver without nvmlDeviceGetArchitecture: sessions only */
    g_assert_true(g_file_set_contents(g_getenv("GPUBALANCE_CONFIG"), "[general]\ndiscover=true\n", -1, NULL));
    g_unsetenv("FAKE_NVML_ARCH");
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpfloat(gpb_test_device(snap, "nvenc:0")->budget, ==, 0);
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);
}

/* In a fresh context, count 1080p30 streams go to the devices expected
 * (comma-joined), all held at once; then they are released. */
static void assert_streams_go_to(int count, const char *expected)
{
    gpubalance_context *ctx = gpb_test_open();
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_lease *leases[8];
    GString *devices = g_string_new(NULL);

    g_assert_cmpint(count, <=, (int)G_N_ELEMENTS(leases));
    for (int i = 0; i < count; i++) {
        leases[i] = gpb_test_acquire(ctx, s);
        g_string_append_printf(devices, "%s%s", i ? "," : "", gpubalance_lease_device(leases[i]));
    }
    g_assert_cmpstr(devices->str, ==, expected);
    for (int i = 0; i < count; i++)
        gpubalance_lease_release(leases[i]);
    g_string_free(devices, TRUE);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void nvml_utilisation_weighs_foreign_streams(void)
{
    g_assert_true(stubs_loaded());
    discovery_env();
    /* Two Ada datacenter GPUs (no session cap), budget 32 each. CUDA
     * reverses NVML's order: nvenc:1 is NVML GPU 0. */
    g_setenv("FAKE_NVML_GPUS", "2", TRUE);
    g_setenv("FAKE_NVML_BRANDS", "2,2", TRUE);
    g_setenv("FAKE_NVML_ARCH", "8,8", TRUE);

    /* One foreign 4K60-class session keeps nvenc:1 90% busy: it weighs
     * 28.8 units, not 1, so all three streams go to nvenc:0 (counting it
     * as one unit would send the third to nvenc:1). */
    g_setenv("FAKE_NVML_SESSIONS", "1,0", TRUE);
    g_setenv("FAKE_NVML_ENC_UTIL", "90,0", TRUE);
    assert_streams_go_to(3, "nvenc:0,nvenc:0,nvenc:0");

    /* Six small foreign sessions at 3%: 0.96 units, not 6, so the second
     * stream goes to nvenc:1 (as six units it would stay on nvenc:0). */
    discovery_env();
    g_setenv("FAKE_NVML_SESSIONS", "6,0", TRUE);
    g_setenv("FAKE_NVML_ENC_UTIL", "3,0", TRUE);
    assert_streams_go_to(2, "nvenc:0,nvenc:1");

    /* Without a utilisation reading each foreign session is one unit. */
    g_unsetenv("FAKE_NVML_ENC_UTIL");
    discovery_env();
    assert_streams_go_to(2, "nvenc:0,nvenc:0");
}

static void fdinfo_busy_time_gives_utilisation(void)
{
    GArray *before = g_array_new(FALSE, TRUE, sizeof(gpb_drm_client));
    GArray *after = g_array_new(FALSE, TRUE, sizeof(gpb_drm_client));
    char *i915 = fixture("i915.txt"), *xe = fixture("xe.txt"), *amd = fixture("amdgpu.txt");
    char *i915_later = replaced(i915, "5000000 ns", "1005000000 ns"); /* +1 s of engine time */
    char *xe_later = replaced(xe, "drm-cycles-vcs:\t8800000", "drm-cycles-vcs:\t8800400");
    char *xe_later2 = replaced(xe_later, "drm-total-cycles-vcs:\t7655183225", "drm-total-cycles-vcs:\t7655184225");
    char *amd_later = replaced(amd, "drm-engine-enc:\t2000000 ns", "drm-engine-enc:\t202000000 ns");
    gpb_drm_client c;

    /* i915: 1 s busy over 1 s on a 2-engine node = 0.5 */
    g_assert_true(gpb_fdinfo_parse(i915, &c));
    g_assert_cmpuint(c.capacity, ==, 2);
    g_array_append_val(before, c);
    g_assert_true(gpb_fdinfo_parse(i915_later, &c));
    g_array_append_val(after, c);
    g_assert_cmpfloat_with_epsilon(gpb_fdinfo_utilisation(before, after, 1000000000ull), 0.5, 1e-9);
    g_assert_cmpfloat(gpb_fdinfo_utilisation(NULL, after, 1000000000ull), ==, -1); /* first look */

    /* + amdgpu (one engine, 0.2 s of 1 s) and xe (400 of 1000 cycles on
     * 2 engines): clients add up */
    g_assert_true(gpb_fdinfo_parse(amd, &c));
    g_array_append_val(before, c);
    g_assert_true(gpb_fdinfo_parse(amd_later, &c));
    g_array_append_val(after, c);
    g_assert_true(gpb_fdinfo_parse(xe, &c));
    g_assert_cmpuint(c.video_total, ==, 7655183225ull);
    g_array_append_val(before, c);
    g_assert_true(gpb_fdinfo_parse(xe_later2, &c));
    g_array_append_val(after, c);
    g_assert_cmpfloat_with_epsilon(gpb_fdinfo_utilisation(before, after, 1000000000ull), 0.5 + 0.2 + 0.2, 1e-9);

    /* a client seen only now has no baseline; nobody at all is 0 */
    g_array_set_size(before, 0);
    g_assert_cmpfloat(gpb_fdinfo_utilisation(before, after, 1000000000ull), ==, 0);
    g_array_unref(before);
    g_array_unref(after);
    g_free(i915);
    g_free(xe);
    g_free(amd);
    g_free(i915_later);
    g_free(xe_later);
    g_free(xe_later2);
    g_free(amd_later);
}

static const gpb_test_case cases[] = {
    GPB_TEST(no_nvidia_libraries_is_a_note),
    GPB_TEST_WITH_STUBS(libraries_but_no_gpu_is_a_note),
    GPB_TEST_WITH_STUBS(driver_library_mismatch_is_a_note),
    GPB_TEST_WITH_STUBS(gpus_are_found_with_uuid_pci_and_cuda_ordinal),
    GPB_TEST_WITH_STUBS(gpu_hidden_from_cuda_is_not_offered),
    GPB_TEST_WITH_STUBS(gpu_without_nvenc_is_listed_and_never_offered),
    GPB_TEST_WITH_STUBS(probe_is_cached_per_uuid_driver_and_boot),
    GPB_TEST_WITH_STUBS(probe_holds_a_lease_while_its_session_is_open),
    GPB_TEST(consumer_cap_follows_driver_version),
    GPB_TEST_WITH_STUBS(config_and_learning_override_the_driver_cap),
    GPB_TEST_WITH_STUBS(foreign_nvenc_sessions_come_from_nvml),
    GPB_TEST(no_render_nodes_is_a_note),
    GPB_TEST(render_node_that_is_not_a_gpu_is_listed_not_offered),
    GPB_TEST(fdinfo_of_each_driver_is_parsed),
    GPB_TEST(fdinfo_counts_clients_whose_video_use_advances),
    GPB_TEST(software_budget_follows_the_core_count),
    GPB_TEST(default_budget_tables),
    GPB_TEST_WITH_STUBS(discovered_gpu_budget_follows_architecture_and_engines),
    GPB_TEST_WITH_STUBS(nvml_utilisation_weighs_foreign_streams),
    GPB_TEST(fdinfo_busy_time_gives_utilisation),
    GPB_TEST_WITH_STUBS(no_nvidia_driver_skips_the_library_search),
    GPB_TEST(fdinfo_scan_runs_outside_the_header_lock),
    GPB_TEST(discovery_root_variables_are_read_only_by_test_builds),
};

GPB_TEST_MAIN(cases)
