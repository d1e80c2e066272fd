# Sourced by the interop scripts: builds the protected_service example and sets `binary` to its
# path. Expects `root` (the repository) to be set and the current directory to be `root`.

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;; # cargo resolves a relative one against the cwd: $root
esac

echo "interop: cargo build --example protected_service" >&2
cargo build --example protected_service

binary="$target_dir/debug/examples/protected_service"
if [[ ! -x "$binary" ]]; then
    echo "interop: built, but $binary is not there" >&2
    exit 1
fi
