/* fuzz_main.c - runs a libFuzzer harness without libFuzzer, as a test:
 * every file under the given directories, then a fixed number of inputs
 * made by a seeded generator (mutations of those files and plain noise),
 * so that CI exercises each harness on every run, under the sanitizers too.
 *
 *   fuzz_X_corpus [--random N] DIR...
 */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static GPtrArray *load_corpus(int argc, char **argv, int first)
{
    GPtrArray *inputs = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);

    for (int i = first; i < argc; i++) {
        GDir *dir = g_dir_open(argv[i], 0, NULL);
        const char *name;

        while (dir && (name = g_dir_read_name(dir))) {
            char *path = g_build_filename(argv[i], name, NULL);
            gchar *data;
            gsize size;

            if (g_file_get_contents(path, &data, &size, NULL))
                g_ptr_array_add(inputs, g_bytes_new_take(data, size));
            g_free(path);
        }
        if (dir)
            g_dir_close(dir);
    }
    return inputs;
}

static GBytes *mutate(GRand *rand, GBytes *seed)
{
    gsize size;
    const guint8 *src = seed ? g_bytes_get_data(seed, &size) : NULL;
    gsize n = seed ? size : (gsize)g_rand_int_range(rand, 0, 4096);
    guint8 *buf = g_malloc(n + 1);

    if (seed)
        memcpy(buf, src, n);
    else
        for (gsize i = 0; i < n; i++)
            buf[i] = (guint8)g_rand_int(rand);
    for (int flips = g_rand_int_range(rand, 1, 8); seed && n && flips > 0; flips--) {
        gsize at = (gsize)g_rand_int_range(rand, 0, (gint32)n);

        switch (g_rand_int_range(rand, 0, 3)) {
        case 0:
            buf[at] = (guint8)g_rand_int(rand);
            break;
        case 1:
            buf[at] = "=[]\n,:;#\0"[g_rand_int_range(rand, 0, 10)];
            break;
        default:
            n = at; /* truncate */
            break;
        }
    }
    return g_bytes_new_take(buf, n);
}

int main(int argc, char **argv)
{
    int first = 1, random_inputs = 2000;
    GPtrArray *corpus;
    GRand *rand = g_rand_new_with_seed(20261123);

    if (argc > 2 && strcmp(argv[1], "--random") == 0) {
        random_inputs = atoi(argv[2]);
        first = 3;
    }
    corpus = load_corpus(argc, argv, first);
    for (guint i = 0; i < corpus->len; i++) {
        gsize size;
        const guint8 *data = g_bytes_get_data(g_ptr_array_index(corpus, i), &size);

        LLVMFuzzerTestOneInput(data, size);
    }
    for (int i = 0; i < random_inputs; i++) {
        GBytes *seed = corpus->len && g_rand_boolean(rand)
                           ? g_ptr_array_index(corpus, g_rand_int_range(rand, 0, (gint32)corpus->len))
                           : NULL;
        GBytes *input = mutate(rand, seed);
        gsize size;
        const guint8 *data = g_bytes_get_data(input, &size);

        LLVMFuzzerTestOneInput(data, size);
        g_bytes_unref(input);
    }
    printf("%u corpus files and %d generated inputs: no crash\n", corpus->len, random_inputs);
    g_ptr_array_unref(corpus);
    g_rand_free(rand);
    return 0;
}
