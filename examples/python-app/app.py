"""An application that follows scim-provisioning's changes over the pull API.

It keeps its own users (`app_users`) and sessions (`app_sessions`) in step with the directory:
each change is applied and its `seq` stored in one transaction, a change whose `seq` is not
above the stored one is skipped, and a deprovisioned user's sessions are revoked. A `410`
(the cursor is older than the worker's retention) would need a full resync, which this example
reports and stops on.

Environment: CHANGES_API_URL (e.g. http://127.0.0.1:9091), CHANGES_API_TOKEN, APP_DATABASE_URL.
"""

import os
import sys
import time

import psycopg
import requests

SCHEMA = """
CREATE TABLE IF NOT EXISTS app_users (
    organization_id   text    NOT NULL,
    directory_user_id text    NOT NULL,
    email             text,
    full_name         text,
    is_active         boolean NOT NULL,
    roles             text[]  NOT NULL DEFAULT '{}',
    PRIMARY KEY (organization_id, directory_user_id)
);
CREATE TABLE IF NOT EXISTS app_sessions (
    id                bigserial PRIMARY KEY,
    organization_id   text      NOT NULL,
    directory_user_id text      NOT NULL,
    revoked_at        timestamptz
);
CREATE TABLE IF NOT EXISTS app_feed_position (
    id  int    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    seq bigint NOT NULL
);
-- The last seq applied per organization: a change never goes back within one.
CREATE TABLE IF NOT EXISTS app_org_position (
    organization_id text   PRIMARY KEY,
    seq             bigint NOT NULL
);
"""


def full_name(user):
    if user.get("display_name"):
        return user["display_name"]
    parts = [p for p in (user.get("given_name"), user.get("family_name")) if p]
    return " ".join(parts) or None


def upsert(cur, org, user):
    cur.execute(
        "INSERT INTO app_users (organization_id, directory_user_id, email, full_name, is_active, roles) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET "
        "email = excluded.email, full_name = excluded.full_name, is_active = excluded.is_active, "
        "roles = excluded.roles",
        (org, user["directory_user_id"], user.get("email"), full_name(user), user["active"], user["roles"]),
    )


def revoke_sessions(cur, org, user):
    cur.execute(
        "UPDATE app_sessions SET revoked_at = now() "
        "WHERE organization_id = %s AND directory_user_id = %s AND revoked_at IS NULL",
        (org, user["directory_user_id"]),
    )


def sign_in(cur, org, user):
    """The example's stand-in for "the user signed in": a session to revoke later."""
    cur.execute(
        "INSERT INTO app_sessions (organization_id, directory_user_id) VALUES (%s, %s)",
        (org, user["directory_user_id"]),
    )


def apply(cur, change):
    kind, org, user = change["kind"], change["organization_id"], change.get("user")
    if kind in ("user.provisioned", "user.reactivated"):
        upsert(cur, org, user)
        sign_in(cur, org, user)
    elif kind == "user.deprovisioned":
        upsert(cur, org, user)
        revoke_sessions(cur, org, user)
    elif kind == "user.erased":
        revoke_sessions(cur, org, user)
        cur.execute(
            "DELETE FROM app_users WHERE organization_id = %s AND directory_user_id = %s",
            (org, user["directory_user_id"]),
        )
    elif kind in ("user.updated", "user.roles_changed", "user.groups_changed"):
        upsert(cur, org, user)
    # group.*, directory.* and kinds added later: nothing to do here (their seq is still stored).


def stored_seq(conn):
    row = conn.execute("SELECT seq FROM app_feed_position").fetchone()
    return row[0] if row else 0


def apply_in_transaction(conn, change):
    """Applies one change and stores its seq, or skips it: all in one transaction."""
    with conn.transaction():
        cur = conn.cursor()
        row = cur.execute("SELECT seq FROM app_feed_position FOR UPDATE").fetchone()
        if row and change["seq"] <= row[0]:
            return  # applied before (a retry after a crash)
        org = change["organization_id"]
        last = cur.execute(
            "SELECT seq FROM app_org_position WHERE organization_id = %s", (org,)
        ).fetchone()
        if last and change["seq"] <= last[0]:
            raise RuntimeError(f"organization {org}: seq {change['seq']} after {last[0]}")
        apply(cur, change)
        cur.execute(
            "INSERT INTO app_org_position (organization_id, seq) VALUES (%s, %s) "
            "ON CONFLICT (organization_id) DO UPDATE SET seq = excluded.seq",
            (org, change["seq"]),
        )
        cur.execute(
            "INSERT INTO app_feed_position (id, seq) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
            (change["seq"],),
        )


def follow(api, token, conn, stop_after_idle=None):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    after = stored_seq(conn)
    delay = 0.5
    while True:
        try:
            r = session.get(f"{api}/v1/changes", params={"after": after, "wait": 10, "limit": 500},
                            timeout=20)
        except requests.RequestException as e:
            print(f"python-app: pull failed ({e.__class__.__name__}); retrying in {delay}s",
                  file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if r.status_code == 410:
            print(f"python-app: cursor expired, resync needed: {r.json()}", file=sys.stderr, flush=True)
            return 3
        if r.status_code >= 500:
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        r.raise_for_status()
        delay = 0.5
        page = r.json()
        for change in page["data"]:
            apply_in_transaction(conn, change)
        after = page["next_after"]


def main():
    api = os.environ["CHANGES_API_URL"].rstrip("/")
    token = os.environ["CHANGES_API_TOKEN"]
    while True:
        try:
            with psycopg.connect(os.environ["APP_DATABASE_URL"]) as conn:
                conn.execute(SCHEMA)
                conn.commit()
                conn.autocommit = True
                return follow(api, token, conn)
        except psycopg.OperationalError as e:
            print(f"python-app: database unavailable ({e.__class__.__name__}); retrying",
                  file=sys.stderr, flush=True)
            time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
