"""The mapping of Teleport names onto STS's rules (RoleSessionName, SourceIdentity, session tags).

moto enforces none of these rules, so they are checked here directly: every output must be accepted by the
real STS, valid names must pass unchanged (CloudTrail shows the real username), and two different inputs must
never share a session identity or a tag value.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interceptor.sts_names import (
    MAX_TAGS,
    TAG_CLUSTER,
    TAG_KEY_MAX,
    TAG_ROLES,
    TAG_TOOL,
    TAG_USER,
    TAG_VALUE_MAX,
    check_tags,
    cluster_value,
    roles_value,
    session_name,
    session_tags,
    tag_value,
)

# STS's own rules, written independently of the module under test.
STS_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
HASH_SUFFIX = re.compile(r"-[0-9a-f]{16}\Z")
NAME_ALPHABET = "abcxyzABCXYZ0189_+=,.@-"
NOT_NAME_CHARS = " :/é\u00a0😀\t*#"


def sts_tag_value_ok(value: str) -> bool:
    """STS tag value rule: 0-256 of `[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`."""
    return len(value) <= 256 and all(unicodedata.category(c)[0] in "LZN" or c in "_.:/=+-@" for c in value)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def clean_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+=,.@-]", "-", value)


names = st.one_of(
    st.text(max_size=90),
    st.text(alphabet=NAME_ALPHABET + NOT_NAME_CHARS, max_size=90),
    st.text(alphabet=NAME_ALPHABET, min_size=0, max_size=70),
    st.from_regex(r"[a-z]{0,50}-[0-9a-f]{16}", fullmatch=True),
    st.emails(),
)
roles_lists = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.text(alphabet="ab-:,. é*", max_size=12),
        st.sampled_from(["developer", "order-admin", "", ":", "order-admin:x", "access", "editor"]),
    ),
    max_size=8,
)


# ---------------------------------------------------------------------------------------------------------------
# session_name: RoleSessionName and SourceIdentity
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user",
    [
        "alice",
        "al",
        "alice@example.com",
        "remote-alice-leaf",
        "bot-reporter",
        "first.last+tag=1,x@corp.example.com",
        "UPPER_lower_09",
        "x-0123456789ABCDEF",  # upper-case hex is not the mapped form
        "x-0123456789abcde",  # 15 hex digits: not the mapped form
        "a" * 64,
        "_-+=,.@",
    ],
)
def test_valid_names_are_used_unchanged(user: str) -> None:
    assert session_name(user) == user


@pytest.mark.parametrize(
    ("user", "expected_prefix"),
    [
        ("alice smith", "alice-smith"),
        ("aws:alice", "aws-alice"),
        ("AWS:root", "AWS-root"),
        ("josé", "jos-"),
        ("a", "a"),
        ("", ""),
        ("domain\\user", "domain-user"),
        ("a/b", "a-b"),
        ("😀", "-"),
        ("x-0123456789abcdef", "x-0123456789abcdef"),  # looks mapped: mapped again
        ("alice\n", "alice-"),
    ],
)
def test_names_that_do_not_fit_get_the_documented_mapping(user: str, expected_prefix: str) -> None:
    # `<cleaned prefix>-<16 hex of SHA-256 of the original>`: stable across releases, so CloudTrail queries and
    # IAM conditions written against a mapped name keep working.
    out = session_name(user)
    assert out == f"{expected_prefix}-{digest(user)}"
    assert STS_NAME.fullmatch(out)


def test_long_names_are_cut_and_hashed_to_exactly_64() -> None:
    name = "a" * 65
    out = session_name(name)
    assert len(out) == 64
    assert out == "a" * 47 + "-" + digest(name)
    # two long names that share the first 64 characters still differ
    assert session_name("b" * 64 + "1") != session_name("b" * 64 + "2")
    assert session_name("b" * 64 + "1") != session_name("b" * 64)


def test_one_character_names_are_padded_to_the_minimum() -> None:
    out = session_name("a")
    assert 2 <= len(out) <= 64
    assert out != session_name("A")
    assert out != session_name("a-")  # which is valid and used as is


@pytest.mark.parametrize("user", ["aws:", "aws:x", "AWS:x", "Aws:admin", "aws:" + "x" * 70])
def test_never_starts_with_aws_prefix(user: str) -> None:
    assert not session_name(user).lower().startswith("aws:")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("alice smith", "alice-smith"),
        ("alice", "alice "),
        ("alice", "Alice"),
        ("a", "a-" + digest("a")),  # input that equals another input's mapped output
        ("x-0123456789abcdef", "x-0123456789abcdef-" + digest("x-0123456789abcdef")),
        ("é", "ü"),
        ("", "-"),
        ("a" * 64, "a" * 65),
        ("a" * 65, "a" * 66),
        ("aws:alice", "aws-alice"),
        ("remote-alice-leaf", "remote alice leaf"),
        ("alice@example.com", "alice@example.com."),
    ],
)
def test_different_users_never_share_a_session_name(a: str, b: str) -> None:
    assert session_name(a) != session_name(b)


@settings(max_examples=300, deadline=None)
@given(names)
def test_session_name_always_satisfies_sts(user: str) -> None:
    out = session_name(user)
    assert STS_NAME.fullmatch(out), out
    assert not out.lower().startswith("aws:")
    assert session_name(user) == out  # deterministic


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=NAME_ALPHABET, min_size=2, max_size=64))
def test_session_name_keeps_every_valid_name(user: str) -> None:
    if HASH_SUFFIX.search(user):
        assert session_name(user) != user  # the mapped form is reserved for mapped names
    else:
        assert session_name(user) == user


@settings(max_examples=300, deadline=None)
@given(names)
def test_changed_names_always_carry_the_hash_and_unchanged_never_do(user: str) -> None:
    out = session_name(user)
    if out == user:
        assert not HASH_SUFFIX.search(out)
    else:
        assert out.endswith("-" + digest(user))


@settings(max_examples=300, deadline=None)
@given(names, names)
def test_session_name_is_injective_on_pairs(a: str, b: str) -> None:
    if a != b:
        assert session_name(a) != session_name(b)


@settings(max_examples=300, deadline=None)
@given(names)
def test_session_name_is_injective_on_lookalikes(user: str) -> None:
    # the inputs most likely to collide with `user`: its own output, its cleaned form, cuts and suffixes
    lookalikes = {
        user,
        session_name(user),
        clean_name(user),
        user[:64],
        user[:47],
        user + "-",
        user + "-" + digest(user),
        clean_name(user)[:47] + "-" + digest(user) + "x",
        user.lower(),
        user.upper(),
    }
    assert len({session_name(x) for x in lookalikes}) == len(lookalikes)


# ---------------------------------------------------------------------------------------------------------------
# tag_value, roles_value, cluster_value
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["", "alice", "alice smith", "josé", "用户", "a:b/c=d+e-f@g_h.i", "no\u00a0break", "x" * 256, "١٢٣"],
)
def test_valid_tag_values_are_unchanged(value: str) -> None:
    assert tag_value(value) == value


@pytest.mark.parametrize(
    ("value", "expected_prefix"),
    [
        ("a,b", "a-b"),
        ("😀", "-"),
        ("tab\there", "tab-here"),
        ("x-0123456789abcdef", "x-0123456789abcdef"),
        ("semi;colon", "semi-colon"),
        ('quote"d', "quote-d"),
    ],
)
def test_tag_values_that_do_not_fit_are_mapped(value: str, expected_prefix: str) -> None:
    out = tag_value(value)
    assert out == f"{expected_prefix}-{digest(value)}"
    assert sts_tag_value_ok(out)


def test_long_tag_values_are_cut_to_256() -> None:
    value = "v" * 257
    out = tag_value(value)
    assert len(out) == TAG_VALUE_MAX == 256
    assert out == "v" * 239 + "-" + digest(value)
    assert tag_value("v" * 300) != out


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.text(alphabet="ab ,:-0123456789abcdef😀", max_size=300)))
def test_tag_value_always_satisfies_sts(value: str) -> None:
    out = tag_value(value)
    assert sts_tag_value_ok(out), out
    assert "," not in out
    assert tag_value(value) == out


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_tag_value_is_injective(a: str, b: str) -> None:
    if a != b:
        assert tag_value(a) != tag_value(b)
    assert tag_value(a) != tag_value(a + ",")
    assert tag_value(tag_value(a + ",")) != tag_value(a + ",")


def test_roles_value_form() -> None:
    assert roles_value([]) == ""
    assert roles_value(()) == ""
    assert roles_value(["developer"]) == ":developer:"
    assert roles_value(["developer", "order-admin"]) == ":developer:order-admin:"
    assert roles_value(("a", "b")) == ":a:b:"
    assert roles_value(["my role"]) == ":my role:"  # a separator character is a valid tag character


def test_roles_value_maps_a_role_holding_the_separator() -> None:
    out = roles_value(["a:b"])
    assert out == f":a-b-{digest('a:b')}:"
    assert out != roles_value(["a", "b"])
    assert ":a:" not in out
    assert ":b:" not in out


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([], [""]),
        ([""], ["", ""]),
        (["a", "b"], ["a:b"]),
        (["a", "b"], ["b", "a"]),
        (["a"], ["a", "a"]),
        (["order-admin"], ["order-admin:x"]),
        (["x"], ["x-" + digest("x")]),
    ],
)
def test_roles_value_distinguishes_role_lists(a: list[str], b: list[str]) -> None:
    assert roles_value(a) != roles_value(b)


def _segments(value: str) -> list[str]:
    """What IAM's `StringLike *:role:*` can match: every text between two separators."""
    return value.split(":")[1:-1]


@settings(max_examples=300, deadline=None)
@given(roles_lists.filter(lambda roles: not any("," in r for r in roles)))
def test_iam_role_matching_only_sees_roles_the_user_has(roles: list[str]) -> None:
    out = roles_value(roles)
    assert sts_tag_value_ok(out)
    for segment in _segments(out):
        assert segment in roles or HASH_SUFFIX.search(segment), (roles, out, segment)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh-", min_size=1, max_size=10), max_size=10))
def test_every_plain_role_is_matchable_when_the_value_fits(roles: list[str]) -> None:
    out = roles_value(roles)
    assert len(out) <= 256
    for role in roles:
        assert f":{role}:" in out


def test_many_roles_are_cut_without_inventing_a_role() -> None:
    roles = [f"role-number-{i:03d}" for i in range(40)] + ["order-admin"]
    out = roles_value(roles)
    assert sts_tag_value_ok(out)
    assert len(out) == 256
    assert ":order-admin:" not in out  # cut off: the user loses IAM matches, never gains one
    assert all(s in roles for s in _segments(out))


def test_role_with_a_comma_does_not_impersonate_another_role() -> None:
    out = roles_value(["ops,admin", "developer"])
    assert sts_tag_value_ok(out)
    assert ":ops-admin:" not in out  # the user does not hold Teleport role 'ops-admin'
    for segment in _segments(out):
        assert segment in {"ops,admin", "developer"} or HASH_SUFFIX.search(segment)


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("https://teleport.example.com", "teleport.example.com"),
        ("https://teleport.example.com:3080", "teleport.example.com:3080"),
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("teleport.example.com", "teleport.example.com"),
    ],
)
def test_cluster_value_is_the_proxy_host(issuer: str, expected: str) -> None:
    assert cluster_value(issuer) == expected


# ---------------------------------------------------------------------------------------------------------------
# session_tags and check_tags
# ---------------------------------------------------------------------------------------------------------------


def test_session_tags_name_user_roles_tool_and_cluster() -> None:
    tags = session_tags("alice", ("developer", "order-admin"), "orders___get_order_tool", "https://t.example.com")
    assert tags == [
        {"Key": "teleport-user", "Value": "alice"},
        {"Key": "teleport-roles", "Value": ":developer:order-admin:"},
        {"Key": "teleport-tool", "Value": "orders___get_order_tool"},
        {"Key": "teleport-cluster", "Value": "t.example.com"},
    ]
    assert (TAG_USER, TAG_ROLES, TAG_TOOL, TAG_CLUSTER) == (
        "teleport-user",
        "teleport-roles",
        "teleport-tool",
        "teleport-cluster",
    )


def test_session_tags_map_values_that_do_not_fit() -> None:
    tags = session_tags("a,b", [], "t" * 300, "https://x.example.com")
    values = {t["Key"]: t["Value"] for t in tags}
    assert values["teleport-user"] == f"a-b-{digest('a,b')}"
    assert values["teleport-roles"] == ""
    assert len(values["teleport-tool"]) == 256
    check_tags(tags)


@settings(max_examples=300, deadline=None)
@given(names, roles_lists, st.text(max_size=300), st.text(max_size=300))
def test_session_tags_always_pass_sts_rules(user: str, roles: list[str], tool: str, issuer: str) -> None:
    tags = session_tags(user, roles, tool, issuer)
    check_tags(tags)  # does not raise
    assert [t["Key"] for t in tags] == [TAG_USER, TAG_ROLES, TAG_TOOL, TAG_CLUSTER]
    assert all(sts_tag_value_ok(t["Value"]) for t in tags)


def _tags(n: int) -> list[dict[str, str]]:
    return [{"Key": f"k{i}", "Value": "v"} for i in range(n)]


def test_check_tags_accepts_the_limits() -> None:
    check_tags([])
    check_tags(_tags(MAX_TAGS))
    check_tags([{"Key": "k" * TAG_KEY_MAX, "Value": "v" * TAG_VALUE_MAX}])
    check_tags([{"Key": "awsx", "Value": ""}, {"Key": "my:aws:key", "Value": "aws:value"}])
    check_tags([{"Key": "ключ", "Value": "значение with space"}])


def test_check_tags_refuses_more_than_50() -> None:
    assert MAX_TAGS == 50
    with pytest.raises(ValueError, match="50"):
        check_tags(_tags(51))


@pytest.mark.parametrize("key", ["aws:user", "AWS:user", "Aws:User", "aws:"])
def test_check_tags_refuses_the_aws_prefix(key: str) -> None:
    with pytest.raises(ValueError, match="aws:"):
        check_tags([{"Key": key, "Value": "v"}])


@pytest.mark.parametrize(
    "tag",
    [
        {"Key": "", "Value": "v"},
        {"Key": "k" * 129, "Value": "v"},
        {"Key": "a,b", "Value": "v"},
        {"Key": "a*b", "Value": "v"},
        {"Key": "tab\tkey", "Value": "v"},
        {"Key": "k", "Value": "v" * 257},
        {"Key": "k", "Value": "a,b"},
        {"Key": "k", "Value": "semi;colon"},
        {"Key": "k", "Value": "😀"},
        {"Key": "k", "Value": "line\nbreak"},
    ],
)
def test_check_tags_refuses_bad_keys_and_values(tag: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="invalid"):
        check_tags([tag])


def test_check_tags_error_does_not_echo_the_value() -> None:
    with pytest.raises(ValueError) as caught:
        check_tags([{"Key": "k", "Value": "secret,value"}])
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("value", ["al\ud800ice", "\udfff"])
def test_lone_surrogates_are_mapped_not_crashed(value: str) -> None:
    assert STS_NAME.fullmatch(session_name(value))
    assert sts_tag_value_ok(tag_value(value))
