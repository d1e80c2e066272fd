# Sourced by the interop scripts: builds an example and sets `binary` to its path. Expects `root`
# (the repository) to be set and the current directory to be `root`. The example is
# `$example` (default protected_service), built with the features in `$example_features`
# (default: the one feature set every script builds that example with, so that one build serves
# them all).

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;; # cargo resolves a relative one against the cwd: $root
esac

example="${example:-protected_service}"
# Not assigned to `example_features`: a script that builds two examples gets each one's set.
features="${example_features:-}"
if [[ -z "$features" ]]; then
    case "$example" in
        demo) features=sqlite,console,metrics ;;
        protected_service) features=introspection,metrics,utoipa ;;
    esac
fi
build=(cargo build --example "$example")
if [[ -n "$features" ]]; then
    build+=(--features "$features")
fi
echo "interop: ${build[*]}" >&2
"${build[@]}"

binary="$target_dir/debug/examples/$example"
if [[ ! -x "$binary" ]]; then
    echo "interop: built, but $binary is not there" >&2
    exit 1
fi
