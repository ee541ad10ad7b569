/* embed-api.c - using libgpubalance directly, as an application that opens
 * its own encoders would: describe the stream, take a lease, open the
 * encoder it names, report how the open went, release when done.
 *
 *   build/examples/embed-api CODEC WIDTH HEIGHT FPS
 */
#include <gpubalance.h>
#include <stdio.h>
#include <stdlib.h>

/* Stands in for avcodec_open2() / an element's state change. */
static int open_encoder(const gpubalance_lease *lease)
{
    printf("opening %s on %s\n", gpubalance_lease_ffmpeg_encoder(lease), gpubalance_lease_device(lease));
    return 0;
}

int main(int argc, char **argv)
{
    gpubalance_context *ctx;
    gpubalance_stream *stream;
    gpubalance_lease *lease;
    int codec;

    if (argc != 5 || (codec = gpubalance_codec_from_name(argv[1])) < 0) {
        fprintf(stderr, "usage: %s h264|hevc|av1 WIDTH HEIGHT FPS\n", argv[0]);
        return 2;
    }
    if (gpubalance_context_open(NULL, &ctx) < 0) {
        fprintf(stderr, "%s\n", gpubalance_last_error());
        return 1;
    }
    gpubalance_stream_new(&stream);
    if (gpubalance_stream_set_codec(stream, (gpubalance_codec)codec) < 0 ||
        gpubalance_stream_set_size(stream, atoi(argv[2]), atoi(argv[3])) < 0 ||
        gpubalance_stream_set_fps(stream, atof(argv[4])) < 0 || gpubalance_stream_set_label(stream, "embed-api") < 0 ||
        gpubalance_lease_acquire(ctx, stream, &lease) < 0) {
        fprintf(stderr, "%s\n", gpubalance_last_error());
        return 1;
    }
    /* try candidates until one opens */
    while (gpubalance_lease_check_open(lease) < 0 || open_encoder(lease) < 0) {
        if (gpubalance_lease_report_failure(&lease, GPUBALANCE_FAILURE_CAPACITY, gpubalance_last_error()) < 0) {
            fprintf(stderr, "no encoder: %s\n", gpubalance_last_error());
            return 1;
        }
    }
    gpubalance_lease_mark_opened(lease);
    printf("encoding on %s (%s), attempt %d: %s\n", gpubalance_lease_device(lease),
           gpubalance_backend_name(gpubalance_lease_backend(lease)), gpubalance_lease_attempt(lease),
           gpubalance_lease_reason(lease));
    gpubalance_lease_release(lease);
    gpubalance_stream_free(stream);
    gpubalance_context_close(ctx);
    return 0;
}
