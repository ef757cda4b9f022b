"""Organisations: creation, isolation between organisations, roles, members, invitations,
verification by the platform, and the regions an authority may audit."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from market.errors import Conflict
from market.organisations import states
from market.organisations.models import Membership
from tests.factories import (
    add_member,
    bearer,
    make_org,
    make_user,
    member_with_token,
    platform_operator,
    token_for,
    unique_email,
)

COOP = {
    "kind": "cooperative",
    "name_zh": "靖远县枸杞种植专业合作社",
    "name_en": "Jingyuan Wolfberry Growers' Cooperative",
    "region_code": "620421",
}


async def test_create_organisation_makes_the_creator_owner(client, session):
    user = await make_user(session)
    token = await token_for(session, user)
    response = await client.post("/organisations", headers=bearer(token), json=COOP)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["verification_status"] == "pending"
    assert body["name_zh"] == "靖远县枸杞种植专业合作社"
    me = (await client.get("/me", headers=bearer(token))).json()
    assert me["memberships"][0]["role"] == "owner"
    assert me["memberships"][0]["organisation_name_zh"] == COOP["name_zh"]


async def test_nobody_can_register_a_platform_organisation(client, session):
    token = await token_for(session, await make_user(session))
    response = await client.post(
        "/organisations", headers=bearer(token), json={**COOP, "kind": "platform"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "kind"


async def test_another_organisation_sees_404_everywhere(client, session):
    _, mine, _ = await member_with_token(session)
    _, _, outsider = await member_with_token(session, kind="buyer", region_code="110106")
    member = {"email": unique_email(), "role": "owner"}
    key = {"name": "k", "scopes": ["members:read"]}
    requests = [
        ("GET", f"/organisations/{mine.id}", None),
        ("PATCH", f"/organisations/{mine.id}", {"description": "hacked"}),
        ("GET", f"/organisations/{mine.id}/members", None),
        ("POST", f"/organisations/{mine.id}/members", member),
        ("GET", f"/organisations/{mine.id}/api-keys", None),
        ("POST", f"/organisations/{mine.id}/api-keys", key),
        ("POST", f"/organisations/{mine.id}/invitations", member),
        ("GET", f"/organisations/{mine.id}/audit-regions", None),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, headers=bearer(outsider), json=body)
        assert response.status_code == 404, (method, path, response.text)
    # and an organisation that does not exist looks the same
    missing = await client.get(
        "/organisations/00000000-0000-4000-8000-000000000000", headers=bearer(outsider)
    )
    assert missing.status_code == 404
    assert (
        missing.json()["detail"]
        == (await client.get(f"/organisations/{mine.id}", headers=bearer(outsider))).json()[
            "detail"
        ]
    )


async def test_roles_limit_what_members_may_do(client, session):
    owner, organisation, owner_token = await member_with_token(session)
    viewer = await make_user(session)
    await add_member(session, organisation, viewer, "viewer")
    viewer_token = await token_for(session, viewer)

    # a viewer reads, but may not edit or manage members
    assert (
        await client.get(f"/organisations/{organisation.id}", headers=bearer(viewer_token))
    ).status_code == 200
    assert (
        await client.get(f"/organisations/{organisation.id}/members", headers=bearer(viewer_token))
    ).status_code == 200
    edit = await client.patch(
        f"/organisations/{organisation.id}",
        headers=bearer(viewer_token),
        json={"description": "x"},
    )
    assert edit.status_code == 403 and edit.json()["code"] == "role_too_low"
    add = await client.post(
        f"/organisations/{organisation.id}/members",
        headers=bearer(viewer_token),
        json={"email": owner.email, "role": "staff"},
    )
    assert add.status_code == 403

    # the owner edits
    edit = await client.patch(
        f"/organisations/{organisation.id}",
        headers=bearer(owner_token),
        json={"description": "种植枸杞 3000 亩，带动 420 户脱贫户。"},
    )
    assert edit.status_code == 200
    assert edit.json()["description"].startswith("种植枸杞")


async def test_add_change_and_remove_members(client, session):
    _, organisation, owner_token = await member_with_token(session)
    newcomer = await make_user(session, name="王芳")
    added = await client.post(
        f"/organisations/{organisation.id}/members",
        headers=bearer(owner_token),
        json={"email": newcomer.email.upper(), "role": "staff"},
    )
    assert added.status_code == 201, added.text
    assert added.json()["display_name"] == "王芳"
    again = await client.post(
        f"/organisations/{organisation.id}/members",
        headers=bearer(owner_token),
        json={"email": newcomer.email, "role": "staff"},
    )
    assert again.status_code == 409
    nobody = await client.post(
        f"/organisations/{organisation.id}/members",
        headers=bearer(owner_token),
        json={"email": unique_email(), "role": "staff"},
    )
    assert nobody.status_code == 422 and nobody.json()["errors"][0]["field"] == "email"

    promoted = await client.patch(
        f"/organisations/{organisation.id}/members/{newcomer.id}",
        headers=bearer(owner_token),
        json={"role": "viewer"},
    )
    assert promoted.json()["role"] == "viewer"
    members = await client.get(
        f"/organisations/{organisation.id}/members", headers=bearer(owner_token)
    )
    assert sorted(m["role"] for m in members.json()) == ["owner", "viewer"]

    removed = await client.delete(
        f"/organisations/{organisation.id}/members/{newcomer.id}", headers=bearer(owner_token)
    )
    assert removed.status_code == 204
    assert await session.get(Membership, (organisation.id, newcomer.id)) is None


async def test_the_last_owner_cannot_leave_or_be_demoted(client, session):
    owner, organisation, owner_token = await member_with_token(session)
    leave = await client.delete(
        f"/organisations/{organisation.id}/members/{owner.id}", headers=bearer(owner_token)
    )
    assert leave.status_code == 409 and leave.json()["code"] == "last_owner"
    demote = await client.patch(
        f"/organisations/{organisation.id}/members/{owner.id}",
        headers=bearer(owner_token),
        json={"role": "staff"},
    )
    assert demote.status_code == 409


async def test_a_member_may_leave_by_themself(client, session):
    _, organisation, _ = await member_with_token(session)
    staff = await make_user(session)
    await add_member(session, organisation, staff, "staff")
    response = await client.delete(
        f"/organisations/{organisation.id}/members/{staff.id}",
        headers=bearer(await token_for(session, staff)),
    )
    assert response.status_code == 204


async def test_invitation_is_accepted_once_by_its_addressee(client, session):
    _, organisation, owner_token = await member_with_token(session)
    invitee = await make_user(session, email=unique_email("zhao.lei"))
    stranger = await make_user(session)
    invited = await client.post(
        f"/organisations/{organisation.id}/invitations",
        headers=bearer(owner_token),
        json={"email": invitee.email, "role": "viewer"},
    )
    assert invited.status_code == 201
    token = invited.json()["token"]

    wrong = await client.post(
        "/invitations/accept",
        headers=bearer(await token_for(session, stranger)),
        json={"token": token},
    )
    assert wrong.status_code == 403

    invitee_token = await token_for(session, invitee)
    accepted = await client.post(
        "/invitations/accept", headers=bearer(invitee_token), json={"token": token}
    )
    assert accepted.status_code == 200 and accepted.json()["id"] == str(organisation.id)
    role = await session.scalar(
        select(Membership.role).where(
            Membership.organisation_id == organisation.id, Membership.user_id == invitee.id
        )
    )
    assert role == "viewer"
    reused = await client.post(
        "/invitations/accept", headers=bearer(invitee_token), json={"token": token}
    )
    assert reused.status_code == 404


async def test_an_owner_lists_and_revokes_invitations(client, session):
    """Owners see their invitations with what became of each, and withdraw an open one: its
    token then lets nobody in. Another organisation's owner gets 404; staff get 403; an
    accepted invitation cannot be revoked (409)."""
    _, organisation, owner_token = await member_with_token(session)
    first = await make_user(session, email=unique_email("li.na"))
    second = await make_user(session, email=unique_email("wang.fang"))
    url = f"/organisations/{organisation.id}/invitations"
    tokens = {}
    for user in (first, second):
        invited = await client.post(
            url, headers=bearer(owner_token), json={"email": user.email, "role": "staff"}
        )
        assert invited.status_code == 201, invited.text
        assert invited.json()["status"] == "open"
        tokens[user.email] = (invited.json()["id"], invited.json()["token"])
    accepted = await client.post(
        "/invitations/accept",
        headers=bearer(await token_for(session, first)),
        json={"token": tokens[first.email][1]},
    )
    assert accepted.status_code == 200, accepted.text
    listed = await client.get(url, headers=bearer(owner_token))
    assert listed.status_code == 200, listed.text
    assert [(i["email"], i["status"]) for i in listed.json()["items"]] == [
        (second.email, "open"),
        (first.email, "accepted"),
    ]
    assert all("token" not in i for i in listed.json()["items"])

    # staff (the one who just joined) may not see or revoke invitations
    staff = bearer(await token_for(session, first))
    assert (await client.get(url, headers=staff)).status_code == 403
    second_id, second_token = tokens[second.email]
    assert (await client.delete(f"{url}/{second_id}", headers=staff)).status_code == 403
    # another organisation's owner: not there
    _, other, other_token = await member_with_token(session)
    elsewhere = await client.delete(
        f"/organisations/{other.id}/invitations/{second_id}", headers=bearer(other_token)
    )
    assert elsewhere.status_code == 404

    revoked = await client.delete(f"{url}/{second_id}", headers=bearer(owner_token))
    assert revoked.status_code == 204
    assert (
        await client.delete(f"{url}/{second_id}", headers=bearer(owner_token))
    ).status_code == 204
    refused = await client.post(
        "/invitations/accept",
        headers=bearer(await token_for(session, second)),
        json={"token": second_token},
    )
    assert refused.status_code == 404
    joined = await session.scalar(
        select(Membership).where(
            Membership.organisation_id == organisation.id, Membership.user_id == second.id
        )
    )
    assert joined is None
    used = await client.delete(f"{url}/{tokens[first.email][0]}", headers=bearer(owner_token))
    assert used.status_code == 409 and used.json()["code"] == "invitation_accepted"
    statuses = [
        i["status"] for i in (await client.get(url, headers=bearer(owner_token))).json()["items"]
    ]
    assert statuses == ["revoked", "accepted"]


async def test_platform_verifies_and_rejects_with_a_reason(client, session):
    _, platform_token = await platform_operator(session)
    applicant = await make_user(session)
    organisation = await make_org(session, owner=applicant, verified=False)
    applicant_token = await token_for(session, applicant)

    queue = await client.get("/platform/organisations", headers=bearer(platform_token))
    assert str(organisation.id) in [o["id"] for o in queue.json()["items"]]
    # platform operators may look at any organisation's profile
    assert (
        await client.get(f"/organisations/{organisation.id}", headers=bearer(platform_token))
    ).status_code == 200

    no_reason = await client.post(
        f"/platform/organisations/{organisation.id}/reject", headers=bearer(platform_token), json={}
    )
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"

    rejected = await client.post(
        f"/platform/organisations/{organisation.id}/reject",
        headers=bearer(platform_token),
        json={"reason": "营业执照照片不清晰，请重新上传。"},
    )
    assert rejected.status_code == 200
    assert rejected.json()["verification_status"] == "rejected"
    assert rejected.json()["rejection_reason"].startswith("营业执照")

    resubmitted = await client.post(
        f"/organisations/{organisation.id}/resubmit", headers=bearer(applicant_token)
    )
    assert resubmitted.json()["verification_status"] == "pending"

    verified = await client.post(
        f"/platform/organisations/{organisation.id}/verify", headers=bearer(platform_token)
    )
    assert verified.status_code == 200
    assert verified.json()["verification_status"] == "verified"
    assert verified.json()["rejection_reason"] is None
    twice = await client.post(
        f"/platform/organisations/{organisation.id}/verify", headers=bearer(platform_token)
    )
    assert twice.status_code == 409 and twice.json()["code"] == "invalid_transition"


async def test_only_platform_operators_verify(client, session):
    applicant = await make_user(session)
    organisation = await make_org(session, owner=applicant, verified=False)
    for token in (
        await token_for(session, applicant),
        (await member_with_token(session, kind="authority", region_code="620400"))[2],
    ):
        response = await client.post(
            f"/platform/organisations/{organisation.id}/verify", headers=bearer(token)
        )
        assert response.status_code == 403 and response.json()["code"] == "platform_only"


async def test_platform_sets_the_regions_an_authority_audits(client, session):
    _, platform_token = await platform_operator(session)
    _, authority, authority_token = await member_with_token(
        session, kind="authority", region_code="620400"
    )
    _, coop, _ = await member_with_token(session)
    response = await client.put(
        f"/platform/organisations/{authority.id}/audit-regions",
        headers=bearer(platform_token),
        json={"region_codes": ["620400", "620421"]},
    )
    assert response.status_code == 200 and response.json() == ["620400", "620421"]
    own = await client.get(
        f"/organisations/{authority.id}/audit-regions", headers=bearer(authority_token)
    )
    assert own.json() == ["620400", "620421"]
    unknown = await client.put(
        f"/platform/organisations/{authority.id}/audit-regions",
        headers=bearer(platform_token),
        json={"region_codes": ["620400", "000001"]},
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "region_codes.1"
    not_authority = await client.put(
        f"/platform/organisations/{coop.id}/audit-regions",
        headers=bearer(platform_token),
        json={"region_codes": ["620400"]},
    )
    assert not_authority.status_code == 422
    self_grant = await client.put(
        f"/platform/organisations/{authority.id}/audit-regions",
        headers=bearer(authority_token),
        json={"region_codes": ["110000"]},
    )
    assert self_grant.status_code == 403


def test_verification_transitions_are_a_closed_table():
    assert states.transition("pending", "verify") == "verified"
    assert states.transition("pending", "reject") == "rejected"
    assert states.transition("rejected", "resubmit") == "pending"
    with pytest.raises(Conflict):
        states.transition("verified", "resubmit")
    with pytest.raises(Conflict):
        states.transition("pending", "explode")


async def test_an_invitation_from_an_owner_since_removed_grants_nothing(client, session):
    """An owner invites an address of their own as owner, then is removed by a co-owner: the
    invitation no longer brings them back."""
    owner, organisation, owner_token = await member_with_token(session)
    co_owner = await make_user(session)
    await add_member(session, organisation, co_owner, "owner")
    alt = await make_user(session, email=unique_email("alt"))
    invited = await client.post(
        f"/organisations/{organisation.id}/invitations",
        headers=bearer(owner_token),
        json={"email": alt.email, "role": "owner"},
    )
    assert invited.status_code == 201, invited.text
    removed = await client.delete(
        f"/organisations/{organisation.id}/members/{owner.id}",
        headers=bearer(await token_for(session, co_owner)),
    )
    assert removed.status_code == 204, removed.text
    back = await client.post(
        "/invitations/accept",
        headers=bearer(await token_for(session, alt)),
        json={"token": invited.json()["token"]},
    )
    assert back.status_code == 404, back.text
    assert "no longer an owner" in back.json()["detail"]
    assert await session.get(Membership, (organisation.id, alt.id)) is None
