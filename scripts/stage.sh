# Sourced by the training scripts: stage FOLDER ARGS... trains a run in FOLDER with `mirnet train
# ARGS...`, or resumes the run already there (a finished one ends at once, taking no step), so a script run again
# after an interruption continues where it stopped. Needs $root, the repository root.
# A resume passes ARGS too: `mirnet train --resume` accepts options equal to the run's recorded
# ones and refuses others, so a folder holding a run of another recipe fails with a clear error
# instead of silently resuming that other run.
stage() {
    local folder=$1
    shift
    if [[ -f "$folder/last.pt" ]]; then
        "$root/run.sh" train --out "$folder" --resume "$@"
    else
        "$root/run.sh" train --out "$folder" "$@"
    fi
}
