// An application that follows scim-provisioning's changes pushed to it (signed HTTP delivery).
//
// Each request carries `{"changes": [...]}`: changes of one organization in `seq` order, signed
// per Standard Webhooks. The app verifies the signature on the raw body, then applies the
// changes and stores each organization's last `seq` in one transaction; a change whose `seq` is
// not above the stored one is skipped (it was applied before: a retry after a timeout or a
// crash). It answers 2xx only after the commit, so an unanswered batch comes again.
//
// Environment: PORT (0 picks a free one, printed as `listening on PORT`), CHANGES_WEBHOOK_SECRET
// (whsec_...), APP_DATABASE_URL.

"use strict";

const express = require("express");
const { Pool } = require("pg");
const { Webhook } = require("standardwebhooks");

const SCHEMA = `
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
-- The last seq applied per organization: a change never goes back within one.
CREATE TABLE IF NOT EXISTS app_org_position (
    organization_id text   PRIMARY KEY,
    seq             bigint NOT NULL
);
-- Every change received, in arrival order (duplicates included): what the order check reads.
CREATE TABLE IF NOT EXISTS app_receipts (
    arrival         bigserial PRIMARY KEY,
    organization_id text      NOT NULL,
    seq             bigint    NOT NULL
);
`;

function fullName(user) {
  if (user.display_name) return user.display_name;
  const parts = [user.given_name, user.family_name].filter(Boolean);
  return parts.length ? parts.join(" ") : null;
}

async function upsert(db, org, user) {
  await db.query(
    `INSERT INTO app_users (organization_id, directory_user_id, email, full_name, is_active, roles)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET
     email = excluded.email, full_name = excluded.full_name, is_active = excluded.is_active,
     roles = excluded.roles`,
    [org, user.directory_user_id, user.email ?? null, fullName(user), user.active, user.roles],
  );
}

async function revokeSessions(db, org, user) {
  await db.query(
    `UPDATE app_sessions SET revoked_at = now()
     WHERE organization_id = $1 AND directory_user_id = $2 AND revoked_at IS NULL`,
    [org, user.directory_user_id],
  );
}

// The example's stand-in for "the user signed in": a session to revoke later.
async function signIn(db, org, user) {
  await db.query(
    "INSERT INTO app_sessions (organization_id, directory_user_id) VALUES ($1, $2)",
    [org, user.directory_user_id],
  );
}

async function apply(db, change) {
  const { kind, organization_id: org, user } = change;
  switch (kind) {
    case "user.provisioned":
    case "user.reactivated":
      await upsert(db, org, user);
      await signIn(db, org, user);
      break;
    case "user.deprovisioned":
      await upsert(db, org, user);
      await revokeSessions(db, org, user);
      break;
    case "user.erased":
      await revokeSessions(db, org, user);
      await db.query(
        "DELETE FROM app_users WHERE organization_id = $1 AND directory_user_id = $2",
        [org, user.directory_user_id],
      );
      break;
    case "user.updated":
    case "user.roles_changed":
    case "user.groups_changed":
      await upsert(db, org, user);
      break;
    default:
    // group.*, directory.* and kinds added later: nothing to do (their seq is still stored).
  }
}

// Applies one request's changes (one organization) in one transaction.
async function applyBatch(pool, changes) {
  const db = await pool.connect();
  // A connection lost mid-transaction fails the query in progress; without a listener its
  // error event would also end the process.
  let lost = null;
  const onError = (e) => {
    lost = e;
  };
  db.on("error", onError);
  try {
    await db.query("BEGIN");
    let applied = 0;
    for (const change of changes) {
      const org = change.organization_id;
      await db.query(
        "INSERT INTO app_receipts (organization_id, seq) VALUES ($1, $2)",
        [org, change.seq],
      );
      await db.query(
        "INSERT INTO app_org_position (organization_id, seq) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        [org],
      );
      const { rows } = await db.query(
        "SELECT seq FROM app_org_position WHERE organization_id = $1 FOR UPDATE",
        [org],
      );
      if (change.seq <= Number(rows[0].seq)) continue; // applied before
      await apply(db, change);
      await db.query("UPDATE app_org_position SET seq = $2 WHERE organization_id = $1", [
        org,
        change.seq,
      ]);
      applied += 1;
    }
    await db.query("COMMIT");
    return applied;
  } catch (e) {
    await db.query("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    db.off("error", onError);
    db.release(lost ?? undefined);
  }
}

async function main() {
  const webhook = new Webhook(process.env.CHANGES_WEBHOOK_SECRET);
  const pool = new Pool({
    connectionString: process.env.APP_DATABASE_URL,
    max: 8,
    connectionTimeoutMillis: 5000,
  });
  pool.on("error", (e) => console.error(`node-app: database connection lost (${e.code ?? e.message})`));
  for (;;) {
    try {
      await pool.query(SCHEMA);
      break;
    } catch (e) {
      console.error(`node-app: database unavailable (${e.code ?? e.message}); retrying`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  const app = express();
  // The signature covers the raw body: parse JSON only after verifying it.
  app.post("/scim/changes", express.raw({ type: "*/*", limit: "20mb" }), async (req, res) => {
    let body;
    try {
      body = webhook.verify(req.body, req.headers);
    } catch {
      return res.status(401).json({ error: "invalid signature" });
    }
    try {
      await applyBatch(pool, body.changes);
      res.status(204).end();
    } catch (e) {
      console.error(`node-app: could not apply ${req.headers["webhook-id"]}: ${e.code ?? e.message}`);
      res.status(503).json({ error: "not applied, send it again" });
    }
  });
  const server = app.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => {
    console.log(`listening on ${server.address().port}`);
  });
  process.on("SIGTERM", () => server.close(() => pool.end().then(() => process.exit(0))));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
