#!/usr/bin/env bash
# Build (and upload) the mie-pose deployment assets, laid out as AWS Media Insights Engine lays them out.
#
#   ./build-s3-dist.sh [--no-upload] [--models-dir DIR | --build-models] [--lambda-runtime RUNTIME]
#                      DIST_BUCKET_PREFIX VERSION REGION
#
#   deployment/global-s3-assets/    mie-pose.template (bucket and version filled in), pose-workflow.asl.json
#   deployment/regional-s3-assets/  mie-pose-lambda.zip, opencv-layer.zip, ffmpeg-layer.zip, models/<container>/model.tar.gz
#
# Without --no-upload both folders are copied to s3://DIST_BUCKET_PREFIX-REGION/mie-pose/VERSION/ with
# `aws s3 cp` (the bucket must exist, in REGION). Model weights: --models-dir DIR (or MIE_POSE_MODELS_DIR)
# holds the exported networks from `python models/build_model_tarballs.py --no-pack --out DIR`;
# --build-models runs that script with the pretrained GluonCV weights. --lambda-runtime (default python3.11)
# is every function's runtime; the layers are built for it. The build fails when a function's code and
# layers unzip past Lambda's 250 MB.
# Environment: PYTHON (default: .venv/bin/python, else python3), MIE_POSE_DIST_DIR (default: deployment/).
set -euo pipefail

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
upload=1
extra=()
positional=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-upload) upload=0; shift ;;
        --models-dir)
            [[ $# -ge 2 ]] || { echo "error: --models-dir needs a folder" >&2; exit 2; }
            extra+=(--models-dir "$2"); shift 2 ;;
        --build-models) extra+=(--build-models); shift ;;
        --lambda-runtime)
            [[ $# -ge 2 ]] || { echo "error: --lambda-runtime needs a runtime (e.g. python3.11)" >&2; exit 2; }
            extra+=(--lambda-runtime "$2"); shift 2 ;;
        -h|--help) usage ;;
        -*) echo "error: unknown option $1" >&2; usage ;;
        *) positional+=("$1"); shift ;;
    esac
done
if [[ ${#positional[@]} -ne 3 ]]; then
    echo "error: expected DIST_BUCKET_PREFIX VERSION REGION, got ${#positional[@]} argument(s)" >&2
    usage
fi
bucket_prefix="${positional[0]}"
version="${positional[1]}"
region="${positional[2]}"

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$here/.venv/bin/python" ]]; then python="$here/.venv/bin/python"; else python="python3"; fi
fi
command -v "$python" >/dev/null 2>&1 || { echo "error: $python not found (set PYTHON)" >&2; exit 1; }
"$python" -c "import yaml" 2>/dev/null || { echo "error: $python lacks PyYAML (pip install pyyaml)" >&2; exit 1; }
"$python" -m pip --version >/dev/null 2>&1 || { echo "error: $python has no pip" >&2; exit 1; }
if [[ $upload -eq 1 ]] && ! command -v aws >/dev/null 2>&1; then
    echo "error: the aws CLI is needed to upload (or pass --no-upload)" >&2
    exit 1
fi

out="${MIE_POSE_DIST_DIR:-$here/deployment}"
echo "Building mie-pose $version for s3://$bucket_prefix-$region into $out"
"$python" "$here/deployment/build_assets.py" --bucket-prefix "$bucket_prefix" --version "$version" \
    --region "$region" --out "$out" ${extra[@]+"${extra[@]}"}

if [[ $upload -eq 1 ]]; then
    destination="s3://$bucket_prefix-$region/mie-pose/$version/"
    echo "Uploading to $destination"
    aws s3 cp "$out/global-s3-assets/" "$destination" --recursive --region "$region"
    aws s3 cp "$out/regional-s3-assets/" "$destination" --recursive --region "$region"
    echo "Template: https://$bucket_prefix-$region.s3.$region.amazonaws.com/mie-pose/$version/mie-pose.template"
fi
