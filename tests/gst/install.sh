#!/bin/sh
# install_puts_the_plugin_under_the_prefix: `meson install` (into a
# DESTDIR, standing in for a fresh prefix) puts the plugin in
# PREFIX/LIBDIR/gstreamer-1.0 with a runpath to PREFIX/LIBDIR, and
# gst-inspect-1.0 loads it from there with no warning.
set -eu
build=$1 prefix=$2 libdir=$3 sanitize=$4
if [ "$sanitize" != none ]; then
    # an uninstrumented gst-inspect-1.0 cannot load a sanitizer-built plugin
    echo "skipped: built with -Db_sanitize=$sanitize"
    exit 77
fi
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac

meson install --no-rebuild --quiet -C "$build" --destdir "$dest" >"$dest/install.log" 2>&1 ||
    { cat "$dest/install.log"; exit 1; }
plugin=$dest$libdir/gstreamer-1.0/libgstgpubalance.so
[ -f "$plugin" ] || { echo "no plugin at $plugin"; find "$dest" -name 'libgstgpubalance*'; exit 1; }
runpath=$(readelf -d "$plugin" | sed -n 's/.*R[UN]*PATH.*\[\(.*\)\]/\1/p')
[ "$runpath" = "$libdir" ] || { echo "runpath '$runpath', want '$libdir'"; exit 1; }

# the runpath names the real prefix: inside DESTDIR the loader is told
out=$(env -u GST_PLUGIN_PATH GST_PLUGIN_PATH="$dest$libdir/gstreamer-1.0" GST_REGISTRY="$dest/registry.bin" \
    GST_PLUGIN_SYSTEM_PATH_1_0="" LD_LIBRARY_PATH="$dest$libdir" gst-inspect-1.0 gpubalanceenc 2>&1)
echo "$out" | head -5
echo "$out" | grep -q 'Codec/Encoder/Video' || { echo "gst-inspect did not find gpubalanceenc"; exit 1; }
if echo "$out" | grep -qi 'warn\|critical\|error'; then
    echo "gst-inspect warned:"; echo "$out" | grep -i 'warn\|critical\|error'; exit 1
fi
echo "installed plugin loads from $libdir/gstreamer-1.0"
