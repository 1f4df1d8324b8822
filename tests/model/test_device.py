"""bfloat16 only where the hardware computes it (dasr.model.device), on made-up machines."""

from __future__ import annotations

import pytest

from dasr.model.device import auto_dtype, cpu_has_bf16, resolve_dtype

CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\nbogomips\t: 4000\n"


@pytest.mark.parametrize("capabilities, cpu_bf16, want", [
    ([(6, 1)], False, "float32"),   # GTX 1080 Ti (the design card's GPU): bf16 is emulated
    ([(7, 0)], True, "float32"),    # V100 on a bf16 CPU: the GPU runs the backprop
    ([(8, 0)], False, "bfloat16"),  # A100
    ([(9, 0)], False, "bfloat16"),  # H100 / H200
    ([(8, 6), (6, 1)], False, "float32"),  # mixed: the weakest GPU decides
    ([], False, "float32"),         # a CPU without bf16 units
    ([], True, "bfloat16"),         # a CPU with AVX512_BF16 or AMX
])
def test_auto_dtype_rule(capabilities, cpu_bf16, want):
    assert auto_dtype(capabilities, cpu_bf16) == want


@pytest.mark.parametrize("extra, want", [
    ("", False), ("avx512_bf16", True), ("amx_bf16 amx_tile", True),
    ("avx512_bf16x", False),  # a flag is a whole word, not a prefix
])
def test_cpu_bf16_flags(extra, want):
    assert cpu_has_bf16(CPUINFO.format(extra=extra), max_isa="") is want


@pytest.mark.parametrize("cap, want", [
    ("", True), ("ALL", True), ("AVX512_CORE_BF16", True), ("avx512_core_amx", True),
    ("AVX2", False), ("AVX512_CORE", False), ("avx512_core_vnni", False),  # emulated, or no bf16 convolution
])
def test_a_onednn_cap_below_bf16_makes_it_not_native(cap, want, monkeypatch):
    bf16_cpu = CPUINFO.format(extra="avx512_bf16")
    assert cpu_has_bf16(bf16_cpu, max_isa=cap) is want
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)  # read from the environment by default
    assert cpu_has_bf16(bf16_cpu) is want


def test_bfloat16_is_refused_by_name_where_the_backend_cannot_compute_it(monkeypatch):
    from dasr.model import device

    monkeypatch.setattr(device, "bf16_unavailable", lambda: "TensorFlow has no bfloat16 convolution on this CPU")
    with pytest.raises(ValueError, match="bfloat16: TensorFlow has no bfloat16 convolution on this CPU; use float32"):
        resolve_dtype("bfloat16")
    assert resolve_dtype("float32") == "float32"


def test_resolve_dtype_names_and_auto_on_this_machine():
    from dasr.model.device import bf16_unavailable

    assert resolve_dtype("float32") == "float32"
    if bf16_unavailable() is None:
        assert resolve_dtype("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="backprop dtype"):
        resolve_dtype("int8")
    # this machine: no GPU is visible to the tests, so auto follows the CPU's flags
    assert resolve_dtype("auto") == ("bfloat16" if cpu_has_bf16() else "float32")


def test_compilation_cache_is_a_jax_matter(tmp_path) -> None:
    import keras

    from dasr.model.device import enable_compilation_cache

    if keras.backend.backend() == "tensorflow":
        assert enable_compilation_cache(tmp_path) is False
    else:  # pragma: no cover - the suite runs on TensorFlow (tests/cli/test_cli_backend.py: on JAX)
        import jax

        assert enable_compilation_cache(tmp_path) is True
        assert jax.config.jax_compilation_cache_dir == str(tmp_path)
