"""Which devices each backend can use here, and how much memory there is.

Runs in the engine process (it imports torch and llama_cpp to ask them).
"""

from __future__ import annotations

import platform
from typing import Any

import psutil


def _torch_report() -> dict[str, Any]:
    try:
        import torch
    except ImportError as exc:
        return {"available": False, "reason": f"torch is not installed ({exc})"}
    devices = ["cpu"]
    gpus = []
    if torch.cuda.is_available():
        devices.insert(0, "cuda")
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            gpus.append({"index": i, "name": props.name, "vram_total": total, "vram_free": free})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.insert(0, "mps")
    return {"available": True, "version": torch.__version__, "devices": devices, "default": devices[0],
            "cuda_gpus": gpus, "threads": torch.get_num_threads()}


def _llamacpp_report() -> dict[str, Any]:
    try:
        import llama_cpp
    except ImportError as exc:
        return {"available": False, "reason": f"llama-cpp-python is not installed ({exc})"}
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    backend = "cpu"
    if gpu:
        backend = "metal" if platform.system() == "Darwin" else "gpu"
    return {"available": True, "version": llama_cpp.__version__, "gpu_offload": gpu,
            "devices": ([backend] if gpu else []) + ["cpu"], "system_info": info.strip()}


def device_report() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "ram_total": vm.total,
        "ram_available": vm.available,
        "cpu_count": psutil.cpu_count(logical=True),
        "platform": f"{platform.system()} {platform.machine()}",
        "llamacpp": _llamacpp_report(),
        "torch": _torch_report(),
    }
