"""Publish a saved model folder to a Hub model repo, whoever saved it: the output folder of the training commands
(hf-primaldual-train-timeseries, hf-primaldual-train-image), a folder of ``save_pretrained``, of your own Trainer's
``save_model`` or one of its ``checkpoint-N`` folders, or a checkpoint converted by hf-primaldual-convert. It holds a
model of this package, or a stock transformers model whose config.json runs a primal-dual attention.

A folder without the project's card gets one rendered from what it holds (config, the Trainer's trainer_state.json
evaluation history, the processor), which says what the folder leaves unknown; the folder itself is never written
to. Refused: what cannot be a model (no config.json or weights, a model with no primal-dual attention), weights
that leave the classifier out or hold NaN or infinite values, a run of the training commands that has not finished
(their card without training_metrics.json), a link leaving the folder. Only the files a model repo needs are
published (weights as safetensors, configs, code files named by ``auto_map``, card, metrics, a converted
checkpoint's tokenizer files) and, with ``--include_logs``, the TensorBoard event files under ``runs/`` (the Hub shows
them as training metrics); the rest (``checkpoint-*`` folders, ``training_args.bin`` and other pickles, files
named like credentials...) is left out and listed.
The repo is created when missing, the commit made on ``--revision`` (a branch, created from main when missing) and
optionally tagged; the model card's repo id placeholder becomes the repo id and ``--card_tags`` go into its
metadata. The branch then holds exactly the published files (``--keep_remote_files`` keeps other remote files).

The endpoint and the token come from the environment, as for every huggingface_hub client: ``HF_ENDPOINT``
(default https://huggingface.co; any Hub-compatible server) and ``HF_TOKEN`` (or the token of ``hf auth login``).

    hf-primaldual-push outputs/timeseries-JapaneseVowels-bn your-name/jv-bn --dry_run
    python scripts/push_to_hub.py outputs/timeseries-JapaneseVowels-bn your-name/jv-bn --dry_run   # from a checkout
    hf-primaldual-push outputs/timeseries-JapaneseVowels-bn your-name/jv-bn --private --tag v1
    hf-primaldual-push outputs/image-cifar10-bn_sh your-org/vit-bn-sh --revision dev \
        --commit_message "200 epochs" --card_tags cifar10
    hf-primaldual-push outputs/vit-base-bn-sh your-name/vit-base-patch16-224-bn-sh   # from hf-primaldual-convert
    hf-primaldual-push my_trainer_run/final your-name/my-model --include_logs   # your own Trainer.save_model

Exit status: 0 pushed (or dry run), 1 the Hub call failed (the message says why and what to do; running the same
command again is safe), 2 the folder is refused (see above), or the repo id, revision or tag is not valid: nothing
was sent.
"""

from __future__ import annotations

import argparse
import sys

from hf_primaldual.hub import (
    DEFAULT_COMMIT_MESSAGE,
    HubPushError,
    PushArgumentError,
    describe_dry_run,
    push_output_folder,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Publish a saved model folder (training commands, save_pretrained, your own Trainer, "
        "hf-primaldual-convert) to a Hub model repo (endpoint and token from HF_ENDPOINT / HF_TOKEN).",
    )
    parser.add_argument("folder", help="the folder a model of this package, or a stock model running a primal-dual "
                        "attention, was saved in")
    parser.add_argument("repo_id", help="namespace/name of the model repo (a bare name goes to the token's user)")
    parser.add_argument("--private", action="store_true", help="create the repo private (refused for a public one)")
    parser.add_argument("--revision", default=None, help="branch to commit to (default main; created if missing)")
    parser.add_argument("--tag", default=None, help="tag the new commit, e.g. v1 (must not exist yet)")
    parser.add_argument("--commit_message", default=DEFAULT_COMMIT_MESSAGE)
    parser.add_argument("--commit_description", default=None)
    parser.add_argument("--card_tags", nargs="+", default=[], help="tags added to the model card's metadata")
    parser.add_argument("--create_pr", action="store_true", help="open a pull request against --revision")
    parser.add_argument("--fail_if_exists", action="store_true", help="refuse to push into an existing repo")
    parser.add_argument(
        "--keep_remote_files", action="store_true",
        help="keep remote files that are not in the folder (default: the branch mirrors the folder)",
    )
    parser.add_argument("--include_logs", action="store_true",
                        help="also publish the TensorBoard event files under the folder (runs/): training metrics")
    parser.add_argument("--dry_run", action="store_true", help="list the files and sizes to send; no network")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = push_output_folder(
            args.folder,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            commit_description=args.commit_description,
            tags=args.card_tags,
            tag=args.tag,
            create_pr=args.create_pr,
            dry_run=args.dry_run,
            exist_ok=not args.fail_if_exists,
            delete_remote_extras=not args.keep_remote_files,
            include_logs=args.include_logs,
        )
    except PushArgumentError as err:  # the folder, the repo id, the revision or the tag: nothing was sent
        print(f"error: {err}", file=sys.stderr)
        return 2
    except HubPushError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if isinstance(result, list):
        print(describe_dry_run(result, args.folder, args.repo_id, args.revision))
        return 0
    where = f"pull request {result.pr_url}" if result.pr_url else f"{args.revision or 'main'}"
    print(f"Pushed {args.folder} to {result.repo_url.repo_id} ({where}): commit {result.oid}")
    if args.tag:
        print(f"Tagged {args.tag}")
    print(result.commit_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
