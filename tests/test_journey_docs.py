"""Issue 10 point 13: the reference recipe's GPU figures say what they are in the project's terms."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reference_recipe_gpu_figures_are_labelled_estimates_with_a_way_to_measure():
    text = open(os.path.join(REPO, "docs", "reference_recipe.md"), encoding="utf-8").read()
    heading = next(line for line in text.splitlines() if line.startswith("## Throughput"))
    assert "estimated from FLOPs, not yet measured on a GPU" in heading, heading
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    assert "benchmarks/bench_train.py" in section and "on your GPU" in section
    for remark in ("workplace", "no GPU here", "this machine"):  # the environment it was written in
        assert remark not in text, remark
    bench = open(os.path.join(REPO, "benchmarks", "bench_train.py"), encoding="utf-8").read()
    assert "no GPU on this machine" not in bench and "estimated from FLOPs" in bench
