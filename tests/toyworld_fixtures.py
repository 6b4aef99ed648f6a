"""Stand-ins for what toy-world runs leave behind, for tests that only read them."""


def fake_science_run(arms: tuple[str, ...], acc: float) -> dict:
    """One seed's record as `bob.toyworld.science` keeps it, every measurement fixed; ``acc`` is every arm's accuracy."""
    synthetic = [arm for arm in arms if arm != "real"]
    measured = {"home_rate": 0.3, "nmi": 0.1, "cramers_v": 0.2}
    return {
        "classifier": {arm: {"test/acc": acc, "test/acc_per_class": acc} for arm in arms},
        "quality": {
            arm: {"fid_mean": 10.0, **({"fid_lower_than_datadream": f"{i}/4"} if arm != "datadream" else {})}
            for i, arm in enumerate(synthetic)
        },
        "dependence": {"real": measured, **{arm: measured for arm in synthetic}},
        "class_fidelity": {arm: 0.5 for arm in synthetic},
    }
