from medrag.cli import main
from medrag.demo import QUESTIONS


def test_demo_indexes_then_reuses_the_store(tiny_model_dir, tmp_path, capsys):
    args = ["demo", "--model", str(tiny_model_dir), "--dir", str(tmp_path / "store"), "--k", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Indexed 193 passages" in out
    for q in QUESTIONS:
        assert q in out
    assert out.count("stage 1 (coarse)") == len(QUESTIONS)
    assert "| 128 |" in out and "| 64 |" in out and "Recommended sizes" in out
    assert main(args) == 0
    assert "Reusing the demo store" in capsys.readouterr().out


def test_demo_rebuilds_its_store_when_the_model_changed(tiny_model_dir, tmp_path, capsys):
    """The demo owns its store: a store built with another model (a previous default) is rebuilt."""
    import shutil

    import torch

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    import medrag

    m = medrag.load_model(other, device="cpu")
    with torch.no_grad():
        next(m.parameters()).add_(0.5)
    m.save(str(other))
    store = str(tmp_path / "store")
    assert main(["demo", "--model", str(tiny_model_dir), "--dir", store, "--k", "1"]) == 0
    capsys.readouterr()
    assert main(["demo", "--model", str(other), "--dir", store, "--k", "1"]) == 0
    out = capsys.readouterr().out
    assert "was built with another model; rebuilding it" in out and "Indexed 193 passages" in out
    assert main(["demo", "--model", str(other), "--dir", store, "--k", "1"]) == 0
    assert "Reusing the demo store" in capsys.readouterr().out


def test_demo_finetune_prints_the_before_after_table(tiny_model_dir, tmp_path, capsys):
    out_dir = tmp_path / "ft"
    args = ["demo", "--model", str(tiny_model_dir), "--dir", str(tmp_path / "store"), "--k", "1",
            "--finetune", "--finetune-dir", str(out_dir), "--epochs", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Fine-tuning on the sample's train split (324 pairs" in out
    assert "| Dimension | Initial ndcg@10 | Final ndcg@10 | Gain |" in out
    assert (out_dir / "matryoshka.json").is_file()
