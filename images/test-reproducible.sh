#!/bin/sh
# The image build test: every recipe built a second time, into another
# directory, gives a byte-identical archive (so the same image id), and
# skopeo accepts every archive as an OCI image.
#
# usage: images/test-reproducible.sh OUT_DIR MKIMAGE
set -eu
out=${1:?usage: test-reproducible.sh OUT_DIR MKIMAGE}
mkimage=${2:?usage: test-reproducible.sh OUT_DIR MKIMAGE}
here=$(cd "$(dirname "$0")" && pwd)
again="$out/images-again"
rm -rf "$again"
mkdir -p "$again"
fail=0
for recipe in "$here"/*/image.toml; do
    name=$(basename "$(dirname "$recipe")")
    first="$out/images/$name.tar"
    [ -f "$first" ] || { echo "image test: $first missing (make images)" >&2; exit 1; }
    "$mkimage" --recipe "$recipe" --out-dir "$out" --output "$again/$name.tar" >/dev/null
    a=$(sha256sum <"$first" | cut -d' ' -f1)
    b=$(sha256sum <"$again/$name.tar" | cut -d' ' -f1)
    if [ "$a" = "$b" ]; then
        echo "image test: $name: two builds are identical (sha256 $a)"
    else
        echo "image test: $name: FAILED: the builds differ ($a, $b)" >&2
        fail=1
    fi
done
for tar in "$out"/images/*.tar; do
    if digest=$(skopeo inspect --format '{{.Digest}} {{.Os}}/{{.Architecture}}' "oci-archive:$tar"); then
        echo "image test: skopeo accepts $(basename "$tar"): $digest"
    else
        echo "image test: skopeo refuses $tar" >&2
        fail=1
    fi
done
rm -rf "$again"
exit "$fail"
