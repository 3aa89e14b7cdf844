from rlops_airflow.promotion import Candidate, ChampionScore, Thresholds, decide

GATE = Thresholds(min_reward=-250, min_speedup=1.5)


def test_passing_candidate_is_promoted() -> None:
    decision = decide(Candidate("3", reward=-180, speedup=2.1), GATE, champion=None)
    assert decision.promote
    assert decision.outcome == "promoted"


def test_each_failed_check_is_a_reason() -> None:
    decision = decide(Candidate("3", reward=-412, speedup=1.2), GATE, champion=None)
    assert not decision.promote
    assert decision.outcome == "rejected: reward -412.0 < -250; speedup x1.20 < x1.5"


def test_worse_than_champion_is_rejected_only_when_asked() -> None:
    candidate = Candidate("3", reward=-190, speedup=2.0)
    champion = ChampionScore("2", reward=-170)
    assert decide(candidate, GATE, champion).outcome == (
        "rejected: reward -190.0 < champion v2 -170.0"
    )
    lenient = Thresholds(-250, 1.5, compare_with_champion=False)
    assert decide(candidate, lenient, champion).promote


def test_equal_to_champion_is_not_worse() -> None:
    assert decide(Candidate("3", -170, 2.0), GATE, ChampionScore("2", -170)).promote


def test_the_champion_is_never_compared_with_itself() -> None:
    assert decide(Candidate("2", -170, 2.0), GATE, ChampionScore("2", -100)).promote


def test_boundaries_pass() -> None:
    assert decide(Candidate("1", reward=-250, speedup=1.5), GATE, None).promote
