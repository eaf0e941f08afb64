"""`decide` on a policy built by hand: the rules that mutation testing showed no test held to
(a grant's time window when no clock is injected, an account's own allow-list)."""

from __future__ import annotations

import ipaddress
import time

import pytest

from sagevault.access import AccessPolicy, Rule, decide
from sagevault.errors import AccessDenied, NetworkDenied
from sagevault.identity import Channel, Principal, Scope

ANYWHERE = (ipaddress.ip_network("0.0.0.0/0"),)


def _policy(rule: Rule, *, own: tuple[ipaddress.IPv4Network, ...] | None = None) -> AccessPolicy:
    return AccessPolicy(
        generation=1,
        status={"p_alice": "active"},
        rules={"p_alice": {"T1": (rule,)}},
        global_networks=ANYWHERE,
        principal_networks={"p_alice": own} if own else {},
    )


def _rule(not_before: float | None = None, not_after: float | None = None) -> Rule:
    return Rule("grt_a", "viewer", frozenset({Scope.RECORDS_READ}), frozenset(), not_before, not_after, None)


def _alice(ip: str = "10.1.2.3") -> Principal:
    return Principal("p_alice", "person", Channel.API, source_ip=ip)


@pytest.mark.parametrize(
    ("not_before", "not_after", "allowed"),
    [(None, None, True), (-3600, 3600, True), (None, -60, False), (3600, None, False), (-7200, -3600, False)],
)
def test_a_grant_counts_only_inside_its_window_by_the_real_clock(
    not_before: float | None, not_after: float | None, allowed: bool
) -> None:
    now = time.time()
    rule = _rule(None if not_before is None else now + not_before, None if not_after is None else now + not_after)
    if allowed:
        assert decide(_policy(rule), _alice(), Scope.RECORDS_READ, "T1") == rule
    else:
        with pytest.raises(AccessDenied):
            decide(_policy(rule), _alice(), Scope.RECORDS_READ, "T1")


def test_an_accounts_own_allow_list_narrows_where_it_may_act_from() -> None:
    policy = _policy(_rule(), own=(ipaddress.ip_network("10.0.0.0/8"),))
    assert decide(policy, _alice("10.9.9.9"), Scope.RECORDS_READ, "T1") is not None
    with pytest.raises(NetworkDenied):
        decide(policy, _alice("192.168.1.10"), Scope.RECORDS_READ, "T1")
    other = Principal("p_bob", "person", Channel.API, source_ip="192.168.1.10")
    with pytest.raises(AccessDenied) as refused:  # bob's refusal is for his grants, not alice's network
        decide(policy, other, Scope.RECORDS_READ, "T1")
    assert not isinstance(refused.value, NetworkDenied)
