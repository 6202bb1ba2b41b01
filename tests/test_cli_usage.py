"""Usage errors through the real entry point (`aloe_cli.cli:main`, what the `aloe` script runs):
one `Error:` line naming the verb, exit 2; help, the version and a verb's own errors unchanged."""

from __future__ import annotations

import pytest

from aloe_cli.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize("argv, says", [
    (["score"], "Error: aloe score: Missing argument 'store'. (see `aloe score --help`)"),
    (["bogus"], "Error: aloe: No such command 'bogus'. (see `aloe --help`)"),
    (["improve", "store", "--steps", "abc"], "Error: aloe improve: Invalid value for '--steps':"),
    (["fit-critic", "store", "--no-such-option"], "Error: aloe fit-critic: No such option: --no-such-option"),
])
def test_usage_errors_are_one_line(capsys, argv, says):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(says), err


def test_help_version_and_verb_errors(capsys, tmp_path):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("aloe ")
    code, out, _ = run(capsys, "score", "--help")
    assert code == 0 and "Usage: aloe score" in out
    code, out, err = run(capsys)  # no verb: the help, exit 2 as Typer has it
    assert code == 2 and "Usage: aloe" in out + err
    code, _, err = run(capsys, "info", tmp_path / "none")
    assert code == 2 and err == (f"Error: {tmp_path / 'none'}: store does not exist "
                                 "(run `aloe ingest` or `aloe rollout` first)\n")


def test_a_failed_score_leaves_only_its_error_line(capsys, tmp_path):
    """The progress bar is up when the frames turn out to be missing; the error is still one line."""
    import chainworld as cw
    from aloe_cli.critic import CriticConfig, fit_critic

    cw.make_store(tmp_path / "store", episodes=6, L=4, T_max=10, seed=2)
    fit_critic(tmp_path / "store", tmp_path / "critic", CriticConfig(bootstrap="data", chunk_size=2, steps=3,
                                                                     batch_size=8, hidden=16, device="cpu"))
    for f in (tmp_path / "store" / "frames").glob("*.parquet"):
        f.unlink()
    code, out, err = run(capsys, "score", tmp_path / "store", "--critic", tmp_path / "critic", "--out",
                         tmp_path / "scores", "--device", "cpu")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and err.startswith("Error: "), err
    assert not (tmp_path / "scores").exists()


@pytest.mark.parametrize("argv, option", [
    (["ingest", "store", "src", "--task", ""], "--task"),
    (["ingest", "store", "src", "--policy-id", " "], "--policy-id"),
    (["fit-critic", "store", "--out", "c", "--obs", ""], "--obs"),
    (["fit-critic", "store", "--out", "c", "--episodes-filter", ""], "--episodes-filter"),
    (["score", "store", "--critic", "c", "--out", "s", "--policy", ""], "--policy"),
])
def test_an_empty_option_is_bad_input(cli, tmp_path, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)
    r = cli(*argv)
    assert r.exit_code == 2 and r.stderr == f"Error: {option}: must not be empty\n", r
    assert not any(tmp_path.iterdir())


def test_help_paragraphs_are_rewrapped_to_the_terminal(capsys, monkeypatch):
    """A docstring paragraph wrapped at 100 columns in the source reads as one paragraph in
    `--help`, not as lines broken where the source broke them."""
    from aloe_cli.commands._common import help_text

    assert help_text("""First line.

        Wrapped over
        two lines.

        Example: x""") == "First line.\n\nWrapped over two lines.\n\nExample: x"
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(capsys, "demo", "--help")
    assert code == 0
    assert "a weak behaviour-cloned policy v0 with the expert taking over on stalls. Prints" in out, out


def test_a_failing_phase_leaves_no_blank_line_on_a_piped_stderr():
    """fit-critic's, score's and compact's bar: on a stderr that is not a terminal, a finished phase
    stays as one line, and a failed one leaves nothing (clearing it printed a blank line before the
    Error: line)."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from aloe_cli.commands.fit_critic import _Bar

    out = {}
    for fail in (False, True):
        buf = io.StringIO()
        bar = _Bar(Progress(console=Console(file=buf, width=60), transient=False))
        try:
            with bar:
                bar.start()
                bar.bar.update(bar.bar.add_task("fit", total=3), completed=1)
                if fail:
                    raise ValueError("the work failed")
        except ValueError:
            pass
        out[fail] = buf.getvalue()
    assert out[False].startswith("fit ") and out[False].count("\n") == 1
    assert out[True] == ""
