# Sourced by the image tests: a timestamped log and the root requirement.
# Usage: . lib/common.sh; test_init NAME "why root is needed"
test_init() {
  TEST_NAME=$1
  T0=$(date +%s)
  if [ "$(id -u)" != 0 ]; then
    # Exit 2 ("setup failed"), never 0: a test that could not run has not passed.
    printf '%s: FAILED — needs root (%s). Nothing was tested.\n' "$TEST_NAME" "$2" >&2
    exit 2
  fi
}
log() { printf '[%s +%ss] %s\n' "$TEST_NAME" "$(( $(date +%s) - T0 ))" "$*" >&2; }
