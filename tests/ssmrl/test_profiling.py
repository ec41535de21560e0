"""ssmrl.profiling: a traced call's kernels, summed per iteration and named by the jax operation they came from."""

import jax
import jax.numpy as jnp

from ssmrl.profiling import format_table, hlo_op_names, kernel_table, profile_call, short_op


def test_short_op_drops_tracing_components():
    assert short_op("jit(update)/vmap()/while/body/eval_jaxpr/Model.step/Dense_0/dot_general") == (
        "Model.step/Dense_0/dot_general")


def test_kernel_table_sums_per_iteration_and_names_ops():
    events = [{"name": "gemm_fusion_1", "dur": 300.0, "args": {}},
              {"name": "gemm_fusion_1", "dur": 100.0, "args": {}},
              {"name": "cutlass_kernel", "dur": 50.0, "args": {"hlo_op": "custom-call.7"}}]
    names = {"gemm_fusion_1": "jit(f)/Dense_0/dot_general", "custom-call_7": "jit(f)/while/body/Conv_0/conv"}
    rows = kernel_table(events, names, per_call=2)
    assert [(r.name, r.ms, r.launches, r.op) for r in rows] == [
        ("gemm_fusion_1", 0.2, 1.0, "Dense_0/dot_general"), ("cutlass_kernel", 0.025, 0.5, "Conv_0/conv")]
    assert format_table(rows).startswith("device time: 0.23 ms per iteration over 2 kernel names")


def test_profile_call_traces_a_jitted_function(tmp_path):
    def model(x):
        with jax.named_scope("projection"):
            y = x @ x
        return jnp.tanh(y).sum()

    fn, x = jax.jit(model), jnp.ones((64, 64))
    ops = {short_op(op) for op in hlo_op_names(fn.lower(x).compile().as_text()).values()}
    assert "projection/dot_general" in ops
    rows = profile_call(fn, (x,), str(tmp_path), per_call=1)
    assert sum(row.ms for row in rows) > 0 and all(row.launches == 1 for row in rows)
    assert all(row.op in ops for row in rows)  # every kernel traced back to an operation of the program
