"""``llama-lora verify DIR MANIFEST``: check a model directory against a sha256 manifest."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify model files against a sha256 manifest",
        description="Hash every file the manifest lists (and refuse unlisted weight files). "
        "With --write, write a manifest for DIR instead.",
    )
    parser.add_argument("directory", help="model or adapter directory")
    parser.add_argument("manifest", help="sha256sum-format or JSON manifest file")
    parser.add_argument("--write", action="store_true", help="write MANIFEST for DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llama_lora.errors import IntegrityError
    from llama_lora.model.integrity import verify_checkpoint, write_manifest

    if args.write:
        manifest = write_manifest(args.directory, args.manifest)
        print(f"wrote {args.manifest}: {len(manifest)} files")
        return 0
    try:
        verified = verify_checkpoint(args.directory, args.manifest)
    except IntegrityError as err:
        print(f"FAILED: {err}")
        return 1
    print(f"OK: {len(verified)} files match {args.manifest}")
    return 0
