"""Forward-only schema migrations for both engines, from one list of steps.

Never edit a published step: append a new one. Step N brings the schema to version N.

SQLite (`MIGRATIONS`, applied past `PRAGMA user_version`): times are ISO 8601 strings in UTC
("2022-11-24T09:00:00+00:00"), so they sort as text.

PostgreSQL (DATABASE_URL; storage/postgres.py, version in the table `schema_version`) came at
version 17: no PostgreSQL database is older. A new one is made by `POSTGRES_BASELINE`, the
schema of SQLite's step 17 in PostgreSQL's dialect (times `timestamptz`, ids `BIGINT`, keys
identity columns, triggers in PL/pgSQL). The rule for every later step: append the SQLite
script to `MIGRATIONS` AND the same change in PostgreSQL's dialect to `POSTGRES_MIGRATIONS`
under the same number (tests/test_migrations.py checks that each step has both).
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: events mirrored from the events file, and registrations.
    """
    CREATE TABLE events (
        id                    TEXT PRIMARY KEY,
        title                 TEXT NOT NULL,
        starts_at             TEXT NOT NULL,
        timezone              TEXT NOT NULL,
        registration_deadline TEXT NOT NULL,
        location              TEXT NOT NULL,
        -- 0 once the event is gone from the events file: kept for its registrations, closed.
        in_file               INTEGER NOT NULL DEFAULT 1 CHECK (in_file IN (0, 1)),
        synced_at             TEXT NOT NULL
    );

    CREATE TABLE registrations (
        id              INTEGER PRIMARY KEY,
        event_id        TEXT NOT NULL REFERENCES events (id),
        user_id         INTEGER NOT NULL,
        username        TEXT,
        telegram_name   TEXT NOT NULL,
        full_name       TEXT NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
        position        TEXT NOT NULL CHECK (length(position) BETWEEN 1 AND 200),
        organization    TEXT NOT NULL CHECK (length(organization) BETWEEN 1 AND 300),
        phone           TEXT NOT NULL CHECK (phone GLOB '+[1-9]*' AND length(phone) <= 16),
        email           TEXT NOT NULL CHECK (email LIKE '%_@_%' AND length(email) <= 254),
        consent_at      TEXT NOT NULL,
        consent_version TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('confirmed', 'withdrawn')),
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );

    -- One active registration per person and event; withdrawn rows stay as history.
    CREATE UNIQUE INDEX registrations_one_active
        ON registrations (event_id, user_id) WHERE status = 'confirmed';
    CREATE INDEX registrations_by_user ON registrations (user_id);
    """,
    # 2: conversation state (aiogram FSM) and the updates already handled.
    """
    CREATE TABLE fsm_states (
        key        TEXT PRIMARY KEY,
        state      TEXT,
        data       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data)),
        updated_at TEXT NOT NULL
    );

    CREATE TABLE handled_updates (
        update_id  INTEGER PRIMARY KEY,
        handled_at TEXT NOT NULL
    );
    """,
    # 3: the outbox (messages to deliver for certain), organiser chats, daily digests.
    """
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        chat_id         INTEGER NOT NULL,
        kind            TEXT NOT NULL CHECK (kind IN ('card', 'digest', 'broadcast')),
        registration_id INTEGER REFERENCES registrations (id),
        -- The message; NULL once delivered, so no personal data outlives its delivery.
        text            TEXT,
        status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        sent_at         TEXT,
        message_id      INTEGER,
        error           TEXT,
        CHECK (status != 'pending' OR text IS NOT NULL)
    );
    CREATE INDEX outbox_pending ON outbox (chat_id, id) WHERE status = 'pending';

    -- Chats the bot writes to on its own: where they moved (a group upgraded to a
    -- supergroup gets a new id) and whether they are reachable.
    CREATE TABLE chats (
        chat_id        INTEGER PRIMARY KEY,
        moved_to       INTEGER,
        unreachable    TEXT,
        unreachable_at TEXT
    );

    -- One row per digest day: the digest is enqueued in the same transaction.
    CREATE TABLE digests (
        local_date  TEXT PRIMARY KEY,
        created_at  TEXT NOT NULL
    );
    """,
    # 4: announcements to every registrant of a session, sent through the outbox.
    """
    CREATE TABLE broadcasts (
        id                  INTEGER PRIMARY KEY,
        event_id            TEXT NOT NULL REFERENCES events (id),
        admin_chat_id       INTEGER NOT NULL,
        progress_message_id INTEGER,
        total               INTEGER NOT NULL,
        created_at          TEXT NOT NULL,
        finished_at         TEXT
    );
    ALTER TABLE outbox ADD COLUMN broadcast_id INTEGER REFERENCES broadcasts (id);
    CREATE INDEX outbox_by_broadcast ON outbox (broadcast_id) WHERE broadcast_id IS NOT NULL;
    """,
    # 5: the ids of the last updates that moved a conversation, written with the move.
    """
    ALTER TABLE fsm_states ADD COLUMN recent_updates TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(recent_updates));
    """,
    # 6: the phone as people read it ("+7 912 345-67-89"), written with the phone, so an
    # export shows 100,000 phones without formatting each anew (NULL in older rows: the
    # export formats those); and each session's registrations in the order they were made,
    # which an export of every session reads one session at a time, with no sort.
    """
    ALTER TABLE registrations ADD COLUMN phone_display TEXT;
    CREATE INDEX registrations_by_event ON registrations (event_id);
    """,
    # 7: announcements with a photo or a document: the file Telegram already holds (the id
    # of the admin's own upload), sent with the row's text as its caption.
    """
    ALTER TABLE outbox ADD COLUMN media_kind TEXT CHECK (media_kind IN ('photo', 'document'));
    ALTER TABLE outbox ADD COLUMN media_file_id TEXT
        CHECK ((media_kind IS NULL) = (media_file_id IS NULL));
    """,
    # 8: the registrant's own values as the middle of their CSV line, made by the cell rule
    # when they are written, and which rule made them (bot/domain/cells.py): an export of 100,000
    # rows reads the text instead of making it anew. NULL in older rows (filled at start-up).
    # A change to those values that does not write the text with them (a hand-made UPDATE)
    # clears it, so it is never stale; the export makes a cleared text itself.
    """
    ALTER TABLE registrations ADD COLUMN csv_cells TEXT;
    ALTER TABLE registrations ADD COLUMN csv_rule TEXT;
    CREATE TRIGGER registrations_csv_cells_stale
        AFTER UPDATE OF full_name, position, organization, phone, phone_display, email,
            user_id, username ON registrations
        WHEN NEW.csv_cells IS OLD.csv_cells AND NEW.csv_cells IS NOT NULL AND (
            NEW.full_name IS NOT OLD.full_name OR NEW.position IS NOT OLD.position
            OR NEW.organization IS NOT OLD.organization OR NEW.phone IS NOT OLD.phone
            OR NEW.phone_display IS NOT OLD.phone_display OR NEW.email IS NOT OLD.email
            OR NEW.user_id IS NOT OLD.user_id OR NEW.username IS NOT OLD.username)
    BEGIN
        UPDATE registrations SET csv_cells = NULL, csv_rule = NULL WHERE id = NEW.id;
    END;
    """,
    # 9: when the sender gave a message up for good (Telegram refused the message itself;
    # its reason is in `error`), told apart from a message parked with its chat (status
    # 'failed', failed_at NULL), which goes out again when the chat is back. Cards and
    # digests failed in a chat that is not parked were refused (parked ones are requeued);
    # older announcements cannot be told apart and stay as they are. Delivered rows are
    # deleted a day after delivery, found by `outbox_sent`.
    """
    ALTER TABLE outbox ADD COLUMN failed_at TEXT;
    UPDATE outbox SET failed_at = created_at
        WHERE status = 'failed' AND kind != 'broadcast'
        AND chat_id NOT IN (SELECT chat_id FROM chats WHERE unreachable IS NOT NULL);
    CREATE INDEX outbox_sent ON outbox (sent_at) WHERE status = 'sent';
    """,
    # 10: the inbox: every update Telegram delivers is written here before it is confirmed,
    # and handled from here by its chat's worker (bot/updates.py). A handled update leaves the
    # inbox as its id enters handled_updates; one that cannot be handled stays, set aside with
    # its reason, until it is pruned with the handled ids.
    """
    CREATE TABLE inbox (
        update_id   INTEGER PRIMARY KEY,
        lane        INTEGER NOT NULL,
        payload     TEXT NOT NULL,
        received_at TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        set_aside   TEXT
    );
    CREATE TRIGGER inbox_handled AFTER INSERT ON handled_updates
    BEGIN
        DELETE FROM inbox WHERE update_id = NEW.update_id;
    END;
    CREATE INDEX handled_updates_by_time ON handled_updates (handled_at);
    """,
    # 11: personal data kept only while its purpose needs it (152-FZ). A registration's
    # personal columns may now be NULL: erased, the row keeps its session, status, times and
    # consent record, so counts and the record of erasures hold. `erased_at` says when; a
    # CHECK keeps "erased" and "all personal columns empty" the same thing. (SQLite cannot
    # drop NOT NULL in place: the table is made anew, the documented way, with foreign keys
    # off around the step; see storage/database.py: _migrate.) Registrations withdrawn before
    # this step are erased by it: the bot had told those people their data would be removed.
    # `audit` is the record of erasures and of who read personal data (exports, searches,
    # announcements), kept three years; `meta` holds when retention began, so an upgrade
    # erases nothing by surprise.
    """
    CREATE TABLE audit (
        id              INTEGER PRIMARY KEY,
        at              TEXT NOT NULL,
        action          TEXT NOT NULL CHECK (action IN ('erase', 'export', 'find', 'broadcast')),
        -- erase: withdrawal, forget, admin, retention, draft_expiry
        reason          TEXT,
        -- 'participant', 'admin <id>', 'retention', 'operator', 'upgrade': never a
        -- participant's id, which is personal data itself
        actor           TEXT NOT NULL,
        registration_id INTEGER,
        event_id        TEXT,
        -- erase: the columns that held a value, comma-separated
        fields          TEXT,
        -- export, find, broadcast: how many registrations it showed or reached
        row_count       INTEGER
    );
    CREATE INDEX audit_by_time ON audit (at);

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value)
        VALUES ('retention_since', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'));

    INSERT INTO audit (at, action, reason, actor, registration_id, event_id, fields)
        SELECT strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'), 'erase', 'withdrawal', 'upgrade',
            id, event_id,
            rtrim(
                CASE WHEN full_name IS NOT NULL THEN 'full_name,' ELSE '' END
                || CASE WHEN position IS NOT NULL THEN 'position,' ELSE '' END
                || CASE WHEN organization IS NOT NULL THEN 'organization,' ELSE '' END
                || CASE WHEN phone IS NOT NULL THEN 'phone,' ELSE '' END
                || CASE WHEN email IS NOT NULL THEN 'email,' ELSE '' END
                || CASE WHEN user_id IS NOT NULL THEN 'user_id,' ELSE '' END
                || CASE WHEN username IS NOT NULL THEN 'username,' ELSE '' END
                || CASE WHEN telegram_name IS NOT NULL THEN 'telegram_name,' ELSE '' END,
                ','
            )
        FROM registrations WHERE status = 'withdrawn';

    CREATE TABLE registrations_new (
        id              INTEGER PRIMARY KEY,
        event_id        TEXT NOT NULL REFERENCES events (id),
        user_id         INTEGER,
        username        TEXT,
        telegram_name   TEXT,
        full_name       TEXT CHECK (length(full_name) BETWEEN 1 AND 200),
        position        TEXT CHECK (length(position) BETWEEN 1 AND 200),
        organization    TEXT CHECK (length(organization) BETWEEN 1 AND 300),
        phone           TEXT CHECK (phone GLOB '+[1-9]*' AND length(phone) <= 16),
        email           TEXT CHECK (email LIKE '%_@_%' AND length(email) <= 254),
        consent_at      TEXT NOT NULL,
        consent_version TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('confirmed', 'withdrawn')),
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        phone_display   TEXT,
        csv_cells       TEXT,
        csv_rule        TEXT,
        erased_at       TEXT,
        CHECK ((erased_at IS NULL) = (
            user_id IS NOT NULL AND telegram_name IS NOT NULL AND full_name IS NOT NULL
            AND position IS NOT NULL AND organization IS NOT NULL AND phone IS NOT NULL
            AND email IS NOT NULL)),
        CHECK (erased_at IS NULL OR (username IS NULL AND phone_display IS NULL
            AND csv_cells IS NULL AND csv_rule IS NULL))
    );
    INSERT INTO registrations_new
        SELECT id, event_id, user_id, username, telegram_name, full_name, position,
            organization, phone, email, consent_at, consent_version, status, created_at,
            updated_at, phone_display, csv_cells, csv_rule, NULL
        FROM registrations WHERE status = 'confirmed';
    INSERT INTO registrations_new
        SELECT id, event_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, consent_at,
            consent_version, status, created_at, updated_at, NULL, NULL, NULL,
            strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')
        FROM registrations WHERE status = 'withdrawn';
    DROP TABLE registrations;
    ALTER TABLE registrations_new RENAME TO registrations;
    CREATE UNIQUE INDEX registrations_one_active
        ON registrations (event_id, user_id) WHERE status = 'confirmed';
    CREATE INDEX registrations_by_user ON registrations (user_id);
    CREATE INDEX registrations_by_event ON registrations (event_id);
    CREATE TRIGGER registrations_csv_cells_stale
        AFTER UPDATE OF full_name, position, organization, phone, phone_display, email,
            user_id, username ON registrations
        WHEN NEW.csv_cells IS OLD.csv_cells AND NEW.csv_cells IS NOT NULL AND (
            NEW.full_name IS NOT OLD.full_name OR NEW.position IS NOT OLD.position
            OR NEW.organization IS NOT OLD.organization OR NEW.phone IS NOT OLD.phone
            OR NEW.phone_display IS NOT OLD.phone_display OR NEW.email IS NOT OLD.email
            OR NEW.user_id IS NOT OLD.user_id OR NEW.username IS NOT OLD.username)
    BEGIN
        UPDATE registrations SET csv_cells = NULL, csv_rule = NULL WHERE id = NEW.id;
    END;

    -- Undelivered copies of withdrawn people's cards that the sender gave up on.
    DELETE FROM outbox WHERE status = 'failed' AND registration_id IN (
        SELECT id FROM registrations WHERE erased_at IS NOT NULL);
    """,
    # 12: when each session ends (UTC, like starts_at): the retention period of its
    # registrations' personal data counts from it. Written at each sync of the events file;
    # NULL in rows synced before, until the next sync, and for good in a session gone from the
    # file before then: readers take such a session as ending two hours after it starts
    # (bot.domain.events.DEFAULT_DURATION).
    """
    ALTER TABLE events ADD COLUMN ends_at TEXT;
    """,
    # 13: seats and a waiting list (issue 13). `events` mirrors each session's `capacity` (NULL:
    # unlimited) and `offer_hours`, so the database alone decides who gets a seat, and
    # `waitlist_closed_at` records that the list was told, once, that no seat freed. A
    # registration may be 'waiting': in line by `queued_at` (then id); `offered_at` and
    # `offer_expires_at` while a freed seat is held for it. The statuses' CHECK grows, so
    # registrations are made anew as in step 11 (its CHECKs and triggers kept); one active
    # registration per person and session now counts the waiting one too. The outbox carries
    # the offer and its button: kinds 'offer' and 'waitlist' (messages to a person on the
    # list) and `reply_markup` (an inline keyboard as JSON); made anew for its kind CHECK.
    """
    ALTER TABLE events ADD COLUMN capacity INTEGER CHECK (capacity IS NULL OR capacity >= 1);
    ALTER TABLE events ADD COLUMN offer_hours INTEGER NOT NULL DEFAULT 24
        CHECK (offer_hours >= 1);
    ALTER TABLE events ADD COLUMN waitlist_closed_at TEXT;

    CREATE TABLE registrations_new (
        id              INTEGER PRIMARY KEY,
        event_id        TEXT NOT NULL REFERENCES events (id),
        user_id         INTEGER,
        username        TEXT,
        telegram_name   TEXT,
        full_name       TEXT CHECK (length(full_name) BETWEEN 1 AND 200),
        position        TEXT CHECK (length(position) BETWEEN 1 AND 200),
        organization    TEXT CHECK (length(organization) BETWEEN 1 AND 300),
        phone           TEXT CHECK (phone GLOB '+[1-9]*' AND length(phone) <= 16),
        email           TEXT CHECK (email LIKE '%_@_%' AND length(email) <= 254),
        consent_at      TEXT NOT NULL,
        consent_version TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('confirmed', 'waiting', 'withdrawn')),
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        phone_display   TEXT,
        csv_cells       TEXT,
        csv_rule        TEXT,
        erased_at       TEXT,
        queued_at       TEXT,
        offered_at      TEXT,
        offer_expires_at TEXT,
        CHECK ((erased_at IS NULL) = (
            user_id IS NOT NULL AND telegram_name IS NOT NULL AND full_name IS NOT NULL
            AND position IS NOT NULL AND organization IS NOT NULL AND phone IS NOT NULL
            AND email IS NOT NULL)),
        CHECK (erased_at IS NULL OR (username IS NULL AND phone_display IS NULL
            AND csv_cells IS NULL AND csv_rule IS NULL)),
        CHECK (status != 'waiting' OR (queued_at IS NOT NULL AND erased_at IS NULL)),
        CHECK ((offered_at IS NULL) = (offer_expires_at IS NULL)),
        CHECK (offered_at IS NULL OR status = 'waiting')
    );
    INSERT INTO registrations_new
        SELECT id, event_id, user_id, username, telegram_name, full_name, position,
            organization, phone, email, consent_at, consent_version, status, created_at,
            updated_at, phone_display, csv_cells, csv_rule, erased_at, NULL, NULL, NULL
        FROM registrations;
    DROP TABLE registrations;
    ALTER TABLE registrations_new RENAME TO registrations;
    CREATE UNIQUE INDEX registrations_one_active
        ON registrations (event_id, user_id) WHERE status IN ('confirmed', 'waiting');
    CREATE INDEX registrations_by_user ON registrations (user_id);
    CREATE INDEX registrations_by_event ON registrations (event_id);
    CREATE INDEX registrations_in_line
        ON registrations (event_id, queued_at, id) WHERE status = 'waiting';
    CREATE INDEX registrations_offers
        ON registrations (offer_expires_at) WHERE offer_expires_at IS NOT NULL;
    CREATE TRIGGER registrations_csv_cells_stale
        AFTER UPDATE OF full_name, position, organization, phone, phone_display, email,
            user_id, username ON registrations
        WHEN NEW.csv_cells IS OLD.csv_cells AND NEW.csv_cells IS NOT NULL AND (
            NEW.full_name IS NOT OLD.full_name OR NEW.position IS NOT OLD.position
            OR NEW.organization IS NOT OLD.organization OR NEW.phone IS NOT OLD.phone
            OR NEW.phone_display IS NOT OLD.phone_display OR NEW.email IS NOT OLD.email
            OR NEW.user_id IS NOT OLD.user_id OR NEW.username IS NOT OLD.username)
    BEGIN
        UPDATE registrations SET csv_cells = NULL, csv_rule = NULL WHERE id = NEW.id;
    END;

    CREATE TABLE outbox_new (
        id              INTEGER PRIMARY KEY,
        chat_id         INTEGER NOT NULL,
        kind            TEXT NOT NULL
                        CHECK (kind IN ('card', 'digest', 'broadcast', 'offer', 'waitlist')),
        registration_id INTEGER REFERENCES registrations (id),
        text            TEXT,
        status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        sent_at         TEXT,
        message_id      INTEGER,
        error           TEXT,
        broadcast_id    INTEGER REFERENCES broadcasts (id),
        media_kind      TEXT CHECK (media_kind IN ('photo', 'document')),
        media_file_id   TEXT CHECK ((media_kind IS NULL) = (media_file_id IS NULL)),
        failed_at       TEXT,
        reply_markup    TEXT CHECK (reply_markup IS NULL OR json_valid(reply_markup)),
        CHECK (status != 'pending' OR text IS NOT NULL)
    );
    INSERT INTO outbox_new
        SELECT id, chat_id, kind, registration_id, text, status, attempts, created_at, sent_at,
            message_id, error, broadcast_id, media_kind, media_file_id, failed_at, NULL
        FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_pending ON outbox (chat_id, id) WHERE status = 'pending';
    CREATE INDEX outbox_by_broadcast ON outbox (broadcast_id) WHERE broadcast_id IS NOT NULL;
    CREATE INDEX outbox_sent ON outbox (sent_at) WHERE status = 'sent';
    """,
    # 14: where the person came from: the source in the session's link ("forum-2026--vk" →
    # "vk"; bot/domain/sources.py), NULL without one. Not personal data: an erasure keeps it,
    # so the counts per source hold. The CHECK is the link's rule, Latin letters, digits and
    # "_", 1 to 30 of them ([^...] in GLOB is any character but those). It must come after
    # any step that makes `registrations` anew without it (issue 13's seats step does).
    """
    ALTER TABLE registrations ADD COLUMN source TEXT
        CHECK (source IS NULL OR (length(source) BETWEEN 1 AND 30
            AND source NOT GLOB '*[^A-Za-z0-9_]*'));
    """,
    # 15: reminders before each session and the calendar file (issue 13). The outbox takes a
    # new kind, 'reminder': reminders and the notices of a changed session, sent to
    # registrants, given up rather than sent late when their chat was parked (like
    # announcements). Such a notice carries the session's new calendar file, uploaded from
    # `attachment` (named `attachment_name`), with the row's text as its caption. SQLite
    # cannot change a CHECK in place: the table is made anew (as in step 13, whose kinds and
    # `reply_markup` it keeps), its indexes with it.
    # `reminders` holds one row per (registration, reminder) queued, written in the same
    # transaction as its outbox row: its primary key is what makes a reminder go once, also
    # across a kill. `event_versions` holds what a registrant's calendar shows of each session
    # (start, end, place, link) and its calendar SEQUENCE, raised when one of them changes.
    """
    CREATE TABLE outbox_new (
        id              INTEGER PRIMARY KEY,
        chat_id         INTEGER NOT NULL,
        kind            TEXT NOT NULL CHECK (
                            kind IN ('card', 'digest', 'broadcast', 'offer', 'waitlist',
                                'reminder')),
        registration_id INTEGER REFERENCES registrations (id),
        -- The message; NULL once delivered, so no personal data outlives its delivery.
        text            TEXT,
        status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        sent_at         TEXT,
        message_id      INTEGER,
        error           TEXT,
        broadcast_id    INTEGER REFERENCES broadcasts (id),
        media_kind      TEXT CHECK (media_kind IN ('photo', 'document')),
        media_file_id   TEXT CHECK ((media_kind IS NULL) = (media_file_id IS NULL)),
        failed_at       TEXT,
        reply_markup    TEXT CHECK (reply_markup IS NULL OR json_valid(reply_markup)),
        attachment_name TEXT,
        attachment      BLOB,
        CHECK (status != 'pending' OR text IS NOT NULL),
        CHECK ((attachment_name IS NULL) = (attachment IS NULL)),
        CHECK (attachment IS NULL OR media_kind IS NULL)
    );
    INSERT INTO outbox_new (id, chat_id, kind, registration_id, text, status, attempts,
            created_at, sent_at, message_id, error, broadcast_id, media_kind, media_file_id,
            failed_at, reply_markup)
        SELECT id, chat_id, kind, registration_id, text, status, attempts, created_at,
            sent_at, message_id, error, broadcast_id, media_kind, media_file_id, failed_at,
            reply_markup
        FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_pending ON outbox (chat_id, id) WHERE status = 'pending';
    CREATE INDEX outbox_by_broadcast ON outbox (broadcast_id) WHERE broadcast_id IS NOT NULL;
    CREATE INDEX outbox_sent ON outbox (sent_at) WHERE status = 'sent';

    CREATE TABLE reminders (
        registration_id INTEGER NOT NULL REFERENCES registrations (id),
        -- minutes before the start, as the events file gives it ("1h": 60)
        offset_minutes  INTEGER NOT NULL CHECK (offset_minutes > 0),
        due_at          TEXT NOT NULL,
        queued_at       TEXT NOT NULL,
        PRIMARY KEY (registration_id, offset_minutes)
    ) WITHOUT ROWID;

    CREATE TABLE event_versions (
        event_id   TEXT PRIMARY KEY REFERENCES events (id),
        starts_at  TEXT NOT NULL,
        ends_at    TEXT NOT NULL,
        location   TEXT NOT NULL,
        join_url   TEXT,
        sequence   INTEGER NOT NULL DEFAULT 0 CHECK (sequence >= 0),
        changed_at TEXT NOT NULL
    );
    """,
    # 16: the language each person reads (issue 14): chosen with /language, else taken from
    # their Telegram language_code at their first message, and kept so that what reaches
    # them outside an update (reminders, offers, notices of a changed session) is in it too.
    # Keyed by the Telegram user id, like a private chat; erased by /forget.
    """
    CREATE TABLE languages (
        user_id  INTEGER PRIMARY KEY,
        language TEXT NOT NULL CHECK (language IN ('ru', 'en')),
        chosen   INTEGER NOT NULL DEFAULT 0 CHECK (chosen IN (0, 1))
    );
    """,
    # 17: answers to each event's own questions (`[[events.questions]]`, issue 14): one row per
    # registration and question answered (a skipped one has none). Personal data: an erasure
    # deletes the registration's rows (storage/erasure.py). A question removed from the file
    # keeps its rows, exported under its id.
    """
    CREATE TABLE answers (
        registration_id INTEGER NOT NULL REFERENCES registrations (id),
        question_id     TEXT NOT NULL CHECK (length(question_id) BETWEEN 1 AND 30),
        value           TEXT NOT NULL CHECK (length(value) BETWEEN 1 AND 1000),
        PRIMARY KEY (registration_id, question_id)
    ) WITHOUT ROWID;
    """,
    # 18: a person's language may be any the bot has a catalogue for (a third language is a
    # .po file, README "Languages"), not only 'ru' and 'en': the CHECK keeps the form only.
    # (SQLite cannot change a CHECK in place: the table is made anew, as in step 11.)
    """
    CREATE TABLE languages_new (
        user_id  INTEGER PRIMARY KEY,
        language TEXT NOT NULL CHECK (length(language) BETWEEN 2 AND 10),
        chosen   INTEGER NOT NULL DEFAULT 0 CHECK (chosen IN (0, 1))
    );
    INSERT INTO languages_new (user_id, language, chosen)
        SELECT user_id, language, chosen FROM languages;
    DROP TABLE languages;
    ALTER TABLE languages_new RENAME TO languages;
    """,
    # 19: PostgreSQL's functions for replicas' chat turns (storage/replicas.py). One process
    # owns a SQLite file: nothing to do here.
    "",
    # 20: PostgreSQL's `turns` made cheaper, and bringing a private chat's person's language
    # (storage/replicas.py). One process knows its people's languages from its own writes:
    # nothing to do here.
    "",
    # 21: PostgreSQL's function that makes a registration in one round trip
    # (storage/registrations.py). SQLite's transaction runs in-process: nothing to do here.
    "",
    # 22: each session's seats counted where they change, not by counting its registrations
    # at every read (storage/seats.py): confirmed, waiting, and waiting with an open offer of
    # a freed seat. Kept by triggers, so no write can miss them; counted once here from the
    # rows. A later step that makes `registrations` anew (as steps 11 and 13 did) must create
    # the triggers again (every test that opens the app checks the counts against the rows at
    # its end: tests/conftest.py).
    """
    ALTER TABLE events ADD COLUMN seats_confirmed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN seats_waiting INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN seats_offered INTEGER NOT NULL DEFAULT 0;
    UPDATE events SET
        seats_confirmed = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'confirmed'),
        seats_waiting = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'waiting'),
        seats_offered = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'waiting' AND offered_at IS NOT NULL);
    CREATE TRIGGER registrations_seats_insert AFTER INSERT ON registrations
    WHEN NEW.status != 'withdrawn'
    BEGIN
        UPDATE events SET
            seats_confirmed = seats_confirmed + (NEW.status = 'confirmed'),
            seats_waiting = seats_waiting + (NEW.status = 'waiting'),
            seats_offered = seats_offered + (NEW.offered_at IS NOT NULL)
        WHERE id = NEW.event_id;
    END;
    CREATE TRIGGER registrations_seats_update AFTER UPDATE OF status, offered_at, event_id
    ON registrations
    WHEN NEW.status IS NOT OLD.status OR NEW.event_id IS NOT OLD.event_id
        OR (NEW.offered_at IS NULL) != (OLD.offered_at IS NULL)
    BEGIN
        UPDATE events SET
            seats_confirmed = seats_confirmed - (OLD.status = 'confirmed'),
            seats_waiting = seats_waiting - (OLD.status = 'waiting'),
            seats_offered = seats_offered - (OLD.offered_at IS NOT NULL)
        WHERE id = OLD.event_id;
        UPDATE events SET
            seats_confirmed = seats_confirmed + (NEW.status = 'confirmed'),
            seats_waiting = seats_waiting + (NEW.status = 'waiting'),
            seats_offered = seats_offered + (NEW.offered_at IS NOT NULL)
        WHERE id = NEW.event_id;
    END;
    CREATE TRIGGER registrations_seats_delete AFTER DELETE ON registrations
    WHEN OLD.status != 'withdrawn'
    BEGIN
        UPDATE events SET
            seats_confirmed = seats_confirmed - (OLD.status = 'confirmed'),
            seats_waiting = seats_waiting - (OLD.status = 'waiting'),
            seats_offered = seats_offered - (OLD.offered_at IS NOT NULL)
        WHERE id = OLD.event_id;
    END;
    """,
)

LATEST_VERSION = len(MIGRATIONS)

POSTGRES_BASELINE_VERSION = 17

POSTGRES_BASELINE = """
-- SQLite's functions that the repositories' SQL calls, so that its text stays one.
-- casefold: lower() folds Unicode by the database's LC_CTYPE (Cyrillic too in a UTF-8 one).
CREATE FUNCTION casefold(value TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN lower(value);
CREATE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS INTEGER
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN strpos(haystack, needle);
-- Paths of the form '$.key' (or '$.a.b'), as the SQL uses them; the value as text.
CREATE FUNCTION json_extract(document TEXT, path TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (document::jsonb) #>> string_to_array(substr(path, 3), '.');

-- `CAST(:time AS utc_text)` types a time parameter where nothing else does (a CASE, a select
-- list): here a timestamptz; to SQLite a name with TEXT in it, so a no-op on its text times.
CREATE DOMAIN utc_text AS TIMESTAMPTZ;

CREATE TABLE events (
    id                    TEXT PRIMARY KEY,
    title                 TEXT NOT NULL,
    starts_at             TIMESTAMPTZ NOT NULL,
    timezone              TEXT NOT NULL,
    registration_deadline TIMESTAMPTZ NOT NULL,
    location              TEXT NOT NULL,
    in_file               INTEGER NOT NULL DEFAULT 1 CHECK (in_file IN (0, 1)),
    synced_at             TIMESTAMPTZ NOT NULL,
    ends_at               TIMESTAMPTZ,
    capacity              BIGINT CHECK (capacity IS NULL OR capacity >= 1),
    offer_hours           INTEGER NOT NULL DEFAULT 24 CHECK (offer_hours >= 1),
    waitlist_closed_at    TIMESTAMPTZ
);

CREATE TABLE registrations (
    id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id),
    user_id          BIGINT,
    username         TEXT,
    telegram_name    TEXT,
    full_name        TEXT CHECK (length(full_name) BETWEEN 1 AND 200),
    position         TEXT CHECK (length(position) BETWEEN 1 AND 200),
    organization     TEXT CHECK (length(organization) BETWEEN 1 AND 300),
    phone            TEXT CHECK (phone ~ '^[+][1-9]' AND length(phone) <= 16),
    email            TEXT CHECK (email LIKE '%_@_%' AND length(email) <= 254),
    consent_at       TIMESTAMPTZ NOT NULL,
    consent_version  TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('confirmed', 'waiting', 'withdrawn')),
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    phone_display    TEXT,
    csv_cells        TEXT,
    csv_rule         TEXT,
    erased_at        TIMESTAMPTZ,
    queued_at        TIMESTAMPTZ,
    offered_at       TIMESTAMPTZ,
    offer_expires_at TIMESTAMPTZ,
    source           TEXT CHECK (source IS NULL OR (length(source) BETWEEN 1 AND 30
                         AND source ~ '^[A-Za-z0-9_]+$')),
    CHECK ((erased_at IS NULL) = (
        user_id IS NOT NULL AND telegram_name IS NOT NULL AND full_name IS NOT NULL
        AND position IS NOT NULL AND organization IS NOT NULL AND phone IS NOT NULL
        AND email IS NOT NULL)),
    CHECK (erased_at IS NULL OR (username IS NULL AND phone_display IS NULL
        AND csv_cells IS NULL AND csv_rule IS NULL)),
    CHECK (status != 'waiting' OR (queued_at IS NOT NULL AND erased_at IS NULL)),
    CHECK ((offered_at IS NULL) = (offer_expires_at IS NULL)),
    CHECK (offered_at IS NULL OR status = 'waiting')
);
CREATE UNIQUE INDEX registrations_one_active
    ON registrations (event_id, user_id) WHERE status IN ('confirmed', 'waiting');
CREATE INDEX registrations_by_user ON registrations (user_id);
CREATE INDEX registrations_by_event ON registrations (event_id);
CREATE INDEX registrations_in_line
    ON registrations (event_id, queued_at, id) WHERE status = 'waiting';
CREATE INDEX registrations_offers
    ON registrations (offer_expires_at) WHERE offer_expires_at IS NOT NULL;
-- SQLite's step 8: a change to the values the CSV text is made of, written without the text,
-- clears it (here before the write: the same effect, one row version instead of two).
CREATE FUNCTION registrations_csv_cells_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.csv_cells := NULL;
    NEW.csv_rule := NULL;
    RETURN NEW;
END $$;
CREATE TRIGGER registrations_csv_cells_stale
    BEFORE UPDATE OF full_name, position, organization, phone, phone_display, email,
        user_id, username ON registrations
    FOR EACH ROW
    WHEN (NEW.csv_cells IS NOT DISTINCT FROM OLD.csv_cells AND NEW.csv_cells IS NOT NULL AND (
        NEW.full_name IS DISTINCT FROM OLD.full_name OR NEW.position IS DISTINCT FROM OLD.position
        OR NEW.organization IS DISTINCT FROM OLD.organization
        OR NEW.phone IS DISTINCT FROM OLD.phone
        OR NEW.phone_display IS DISTINCT FROM OLD.phone_display
        OR NEW.email IS DISTINCT FROM OLD.email OR NEW.user_id IS DISTINCT FROM OLD.user_id
        OR NEW.username IS DISTINCT FROM OLD.username))
    EXECUTE FUNCTION registrations_csv_cells_stale();

CREATE TABLE fsm_states (
    key            TEXT PRIMARY KEY,
    state          TEXT,
    data           TEXT NOT NULL DEFAULT '{}' CHECK (data::jsonb IS NOT NULL),
    updated_at     TIMESTAMPTZ NOT NULL,
    recent_updates TEXT NOT NULL DEFAULT '[]' CHECK (recent_updates::jsonb IS NOT NULL)
);

CREATE TABLE handled_updates (
    update_id  BIGINT PRIMARY KEY,
    handled_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX handled_updates_by_time ON handled_updates (handled_at);

CREATE TABLE chats (
    chat_id        BIGINT PRIMARY KEY,
    moved_to       BIGINT,
    unreachable    TEXT,
    unreachable_at TIMESTAMPTZ
);

CREATE TABLE digests (
    local_date TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE broadcasts (
    id                  BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event_id            TEXT NOT NULL REFERENCES events (id),
    admin_chat_id       BIGINT NOT NULL,
    progress_message_id BIGINT,
    total               BIGINT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    finished_at         TIMESTAMPTZ
);

CREATE TABLE outbox (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    chat_id         BIGINT NOT NULL,
    kind            TEXT NOT NULL CHECK (
                        kind IN ('card', 'digest', 'broadcast', 'offer', 'waitlist', 'reminder')),
    registration_id BIGINT REFERENCES registrations (id),
    text            TEXT,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    message_id      BIGINT,
    error           TEXT,
    broadcast_id    BIGINT REFERENCES broadcasts (id),
    media_kind      TEXT CHECK (media_kind IN ('photo', 'document')),
    media_file_id   TEXT CHECK ((media_kind IS NULL) = (media_file_id IS NULL)),
    failed_at       TIMESTAMPTZ,
    reply_markup    TEXT CHECK (reply_markup IS NULL OR reply_markup::jsonb IS NOT NULL),
    attachment_name TEXT,
    attachment      BYTEA,
    CHECK (status != 'pending' OR text IS NOT NULL),
    CHECK ((attachment_name IS NULL) = (attachment IS NULL)),
    CHECK (attachment IS NULL OR media_kind IS NULL)
);
CREATE INDEX outbox_pending ON outbox (chat_id, id) WHERE status = 'pending';
CREATE INDEX outbox_by_broadcast ON outbox (broadcast_id) WHERE broadcast_id IS NOT NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE status = 'sent';
-- PostgreSQL does not index the referencing side of a foreign key by itself.
CREATE INDEX outbox_by_registration ON outbox (registration_id)
    WHERE registration_id IS NOT NULL;

CREATE TABLE inbox (
    update_id   BIGINT PRIMARY KEY,
    lane        BIGINT NOT NULL,
    payload     TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    set_aside   TEXT
);
CREATE FUNCTION inbox_handled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM inbox WHERE update_id = NEW.update_id;
    RETURN NULL;
END $$;
CREATE TRIGGER inbox_handled AFTER INSERT ON handled_updates
    FOR EACH ROW EXECUTE FUNCTION inbox_handled();

CREATE TABLE audit (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('erase', 'export', 'find', 'broadcast')),
    reason          TEXT,
    actor           TEXT NOT NULL,
    registration_id BIGINT,
    event_id        TEXT,
    fields          TEXT,
    row_count       BIGINT
);
CREATE INDEX audit_by_time ON audit (at);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- As SQLite's step 11 writes it: ISO 8601 in UTC, milliseconds.
INSERT INTO meta (key, value) VALUES ('retention_since',
    to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"'));

CREATE TABLE reminders (
    registration_id BIGINT NOT NULL REFERENCES registrations (id),
    offset_minutes  INTEGER NOT NULL CHECK (offset_minutes > 0),
    due_at          TIMESTAMPTZ NOT NULL,
    queued_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (registration_id, offset_minutes)
);

CREATE TABLE event_versions (
    event_id   TEXT PRIMARY KEY REFERENCES events (id),
    starts_at  TIMESTAMPTZ NOT NULL,
    ends_at    TIMESTAMPTZ NOT NULL,
    location   TEXT NOT NULL,
    join_url   TEXT,
    sequence   INTEGER NOT NULL DEFAULT 0 CHECK (sequence >= 0),
    changed_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE languages (
    user_id  BIGINT PRIMARY KEY,
    language TEXT NOT NULL CHECK (language IN ('ru', 'en')),
    chosen   INTEGER NOT NULL DEFAULT 0 CHECK (chosen IN (0, 1))
);

CREATE TABLE answers (
    registration_id BIGINT NOT NULL REFERENCES registrations (id),
    question_id     TEXT NOT NULL CHECK (length(question_id) BETWEEN 1 AND 30),
    value           TEXT NOT NULL CHECK (length(value) BETWEEN 1 AND 1000),
    PRIMARY KEY (registration_id, question_id)
);
"""

# Steps after the baseline, in PostgreSQL's dialect, by the number of their SQLite step.
POSTGRES_MIGRATIONS: dict[int, str] = {
    18: """
    ALTER TABLE languages DROP CONSTRAINT languages_language_check;
    ALTER TABLE languages ADD CONSTRAINT languages_language_check
        CHECK (length(language) BETWEEN 2 AND 10);
    """,
    # A chat's turn (storage/replicas.py) taken, or given back and taken again if updates of
    # the chat wait, in one round trip together with what the turn is for: the chat's waiting
    # updates and its conversation's row. They are read by a statement of their own after
    # the lock is granted: a statement's snapshot is older than a lock it takes itself, so it
    # could miss the last writes of the replica that held the turn until then. (In a volatile
    # function each statement has its own snapshot.) The first waiting update counts an
    # attempt unless the caller received it: another replica may have stopped with it in hand.
    # No row from take_turn: never; from pass_turn: nothing waits. `taken` false: another
    # replica has the chat. `turns` does several of them in one round trip (a replica asks for
    # the turns of all its chats at once, storage/replicas.py), each row tagged with the
    # position of its request.
    19: """
    -- The functions read a chat's waiting updates at every turn: by index, not by a scan of
    -- a table whose every row is written and deleted within seconds (PostgreSQL only: one
    -- SQLite process never reads the inbox by chat).
    CREATE INDEX inbox_by_lane ON inbox (lane, update_id) WHERE set_aside IS NULL;

    CREATE FUNCTION take_turn(
        key_schema INTEGER, key_chat INTEGER, chat BIGINT, conversation TEXT, received BIGINT[]
    ) RETURNS TABLE (
        taken BOOLEAN, waiting_id BIGINT, waiting_payload TEXT, waiting_attempts INTEGER,
        fsm_state TEXT, fsm_data TEXT, fsm_recent TEXT
    ) LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        first_id BIGINT;
    BEGIN
        IF NOT pg_try_advisory_lock(key_schema, key_chat) THEN
            RETURN QUERY SELECT false, NULL::BIGINT, NULL::TEXT, NULL::INTEGER,
                NULL::TEXT, NULL::TEXT, NULL::TEXT;
            RETURN;
        END IF;
        SELECT min(i.update_id) INTO first_id FROM inbox AS i
            WHERE i.lane = chat AND i.set_aside IS NULL;
        IF first_id IS NOT NULL AND NOT first_id = ANY (received) THEN
            UPDATE inbox AS i SET attempts = i.attempts + 1 WHERE i.update_id = first_id;
        END IF;
        RETURN QUERY
            SELECT true, i.update_id, i.payload, i.attempts, f.state, f.data, f.recent_updates
            FROM (SELECT 1) AS one
            LEFT JOIN inbox AS i ON i.lane = chat AND i.set_aside IS NULL
            LEFT JOIN fsm_states AS f ON f.key = conversation
            ORDER BY i.update_id;
    END $$;

    CREATE FUNCTION pass_turn(
        key_schema INTEGER, key_chat INTEGER, chat BIGINT, conversation TEXT, received BIGINT[]
    ) RETURNS TABLE (
        taken BOOLEAN, waiting_id BIGINT, waiting_payload TEXT, waiting_attempts INTEGER,
        fsm_state TEXT, fsm_data TEXT, fsm_recent TEXT
    ) LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_unlock(key_schema, key_chat);
        IF EXISTS (SELECT 1 FROM inbox AS i WHERE i.lane = chat AND i.set_aside IS NULL) THEN
            RETURN QUERY
                SELECT * FROM take_turn(key_schema, key_chat, chat, conversation, received);
        END IF;
    END $$;

    CREATE FUNCTION turns(
        key_schema INTEGER, passes BOOLEAN[], chats BIGINT[], key_chats INTEGER[],
        conversations TEXT[], received_chats BIGINT[], received_ids BIGINT[]
    ) RETURNS TABLE (
        request INTEGER, taken BOOLEAN, waiting_id BIGINT, waiting_payload TEXT,
        waiting_attempts INTEGER, fsm_state TEXT, fsm_data TEXT, fsm_recent TEXT
    ) LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        mine BIGINT[];
    BEGIN
        FOR n IN 1 .. coalesce(array_length(chats, 1), 0) LOOP
            mine := ARRAY(
                SELECT r.id FROM unnest(received_chats, received_ids) AS r (chat, id)
                WHERE r.chat = chats[n]
            );
            IF passes[n] THEN
                RETURN QUERY SELECT n, t.* FROM pass_turn(
                    key_schema, key_chats[n], chats[n], conversations[n], mine) AS t;
            ELSE
                RETURN QUERY SELECT n, t.* FROM take_turn(
                    key_schema, key_chats[n], chats[n], conversations[n], mine) AS t;
            END IF;
        END LOOP;
    END $$;
    """,
    # `turns` did about eight statements per request (the received ids, the nested functions
    # and their result sets, the first id, the rows): a quarter of the PostgreSQL backends'
    # CPU in the replicas' benchmark (perf). Now the locks are plain expressions, which
    # PL/pgSQL evaluates without a statement; a refusal is a row returned without one; a take
    # is one statement whose first part counts the attempt (a data-modifying CTE: the rest
    # of the statement sees the rows as they were, hence the coalesce), read after the lock
    # is granted as before; a pass that finds nothing waiting costs one EXISTS.
    # And a private chat's turn (a positive chat id: the chat is the person, bot/updates.py
    # lane_of) also brings the person's language as stored (storage/languages.py), so the
    # update's middleware reads none: a join of the statement that reads the turn's rows,
    # after the lock is granted, as the conversation's row is (another replica may have
    # changed it: /language, /forget). A request may carry a candidate, the language of the
    # person's Telegram as `Languages.of` maps it, when the replica that received their
    # update does not know theirs: stored if they have none (a first message) before the
    # lock is tried, so also when the turn is taken elsewhere: the holder reads it with the
    # turn it takes again for that update.
    20: """
    DROP FUNCTION turns(INTEGER, BOOLEAN[], BIGINT[], INTEGER[], TEXT[], BIGINT[], BIGINT[]);
    CREATE FUNCTION turns(
        key_schema INTEGER, passes BOOLEAN[], chats BIGINT[], key_chats INTEGER[],
        conversations TEXT[], received_chats BIGINT[], received_ids BIGINT[],
        candidates TEXT[]
    ) RETURNS TABLE (
        request INTEGER, taken BOOLEAN, waiting_id BIGINT, waiting_payload TEXT,
        waiting_attempts INTEGER, fsm_state TEXT, fsm_data TEXT, fsm_recent TEXT,
        language TEXT
    ) LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        ignored BOOLEAN;
    BEGIN
        FOR n IN 1 .. coalesce(array_length(chats, 1), 0) LOOP
            IF passes[n] THEN
                ignored := pg_advisory_unlock(key_schema, key_chats[n]);
                CONTINUE WHEN NOT EXISTS (
                    SELECT 1 FROM inbox AS i WHERE i.lane = chats[n] AND i.set_aside IS NULL);
            END IF;
            IF candidates[n] IS NOT NULL AND chats[n] > 0 THEN
                INSERT INTO languages AS l (user_id, language) VALUES (chats[n], candidates[n])
                    ON CONFLICT (user_id) DO NOTHING;
            END IF;
            IF NOT pg_try_advisory_lock(key_schema, key_chats[n]) THEN
                request := n;
                taken := false;
                waiting_id := NULL;
                waiting_payload := NULL;
                waiting_attempts := NULL;
                fsm_state := NULL;
                fsm_data := NULL;
                fsm_recent := NULL;
                language := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
            RETURN QUERY
                WITH first AS (
                    SELECT min(i.update_id) AS id FROM inbox AS i
                    WHERE i.lane = chats[n] AND i.set_aside IS NULL
                ), counted AS (
                    UPDATE inbox AS i SET attempts = i.attempts + 1 FROM first
                    WHERE i.update_id = first.id AND NOT EXISTS (
                        SELECT 1 FROM unnest(received_chats, received_ids) AS r (chat, id)
                        WHERE r.chat = chats[n] AND r.id = first.id)
                    RETURNING i.update_id, i.attempts
                )
                SELECT n, true, i.update_id, i.payload, coalesce(c.attempts, i.attempts),
                    f.state, f.data, f.recent_updates, l.language
                FROM (SELECT 1) AS one
                LEFT JOIN inbox AS i ON i.lane = chats[n] AND i.set_aside IS NULL
                LEFT JOIN counted AS c ON c.update_id = i.update_id
                LEFT JOIN fsm_states AS f ON f.key = conversations[n]
                LEFT JOIN languages AS l ON l.user_id = chats[n] AND chats[n] > 0
                ORDER BY i.update_id;
        END LOOP;
    END $$;
    -- A replica of the version before (seven arguments) keeps taking turns while a rolling
    -- restart (README) has not reached it yet: it stores no candidates, as before.
    CREATE FUNCTION turns(
        key_schema INTEGER, passes BOOLEAN[], chats BIGINT[], key_chats INTEGER[],
        conversations TEXT[], received_chats BIGINT[], received_ids BIGINT[]
    ) RETURNS TABLE (
        request INTEGER, taken BOOLEAN, waiting_id BIGINT, waiting_payload TEXT,
        waiting_attempts INTEGER, fsm_state TEXT, fsm_data TEXT, fsm_recent TEXT
    ) LANGUAGE sql VOLATILE AS $$
        SELECT t.request, t.taken, t.waiting_id, t.waiting_payload, t.waiting_attempts,
            t.fsm_state, t.fsm_data, t.fsm_recent
        FROM turns(key_schema, passes, chats, key_chats, conversations, received_chats,
            received_ids, NULL::TEXT[]) AS t
    $$;
    DROP FUNCTION pass_turn(INTEGER, INTEGER, BIGINT, TEXT, BIGINT[]);
    DROP FUNCTION take_turn(INTEGER, INTEGER, BIGINT, TEXT, BIGINT[]);
    """,
    # A registration made in one statement in autocommit (storage/registrations.py,
    # Registrations.create), instead of four round trips with the global serial lock held
    # across them: the lock, the row with its seat, its answers, its place in line and the
    # organisers' cards, all in one transaction, the serial lock (storage/postgres.py
    # SERIAL_LOCK, passed as `serial_lock`) taken first (why first: in the function). The
    # cards come rendered, `<#id>` and `<#place>` standing for what only the insert knows (a
    # person's `<` reaches a text escaped, as `&lt;`), one text for a seat and one for the
    # waiting list; they go to the outbox as `Outbox.add` writes them (storage/outbox.py: a
    # moved chat's new id, a parked chat's rows parked). No row: the event is not in the
    # database.
    21: """
    CREATE FUNCTION create_registration(
        serial_lock BIGINT, new_event_id TEXT, new_user_id BIGINT, new_username TEXT,
        new_telegram_name TEXT, new_full_name TEXT, new_position TEXT, new_organization TEXT,
        new_phone TEXT, new_phone_display TEXT, new_email TEXT, new_consent_at TIMESTAMPTZ,
        new_consent_version TEXT, stamp TIMESTAMPTZ, new_csv_cells TEXT, new_csv_rule TEXT,
        new_source TEXT, question_ids TEXT[], answer_values TEXT[], card_chats BIGINT[],
        card_confirmed TEXT, card_waiting TEXT
    ) RETURNS TABLE (registration registrations, place BIGINT)
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        made registrations;
        card TEXT;
    BEGIN
        -- First, in a statement of its own: each statement below takes its snapshot after
        -- the lock is granted, so the seats counted include every registration committed
        -- before (a lock taken inside the INSERT would come after the INSERT's snapshot).
        PERFORM pg_advisory_xact_lock(serial_lock);
        INSERT INTO registrations AS r (
            event_id, user_id, username, telegram_name, full_name, position, organization,
            phone, phone_display, email, consent_at, consent_version, status, created_at,
            updated_at, csv_cells, csv_rule, queued_at, source
        )
        SELECT new_event_id, new_user_id, new_username, new_telegram_name, new_full_name,
            new_position, new_organization, new_phone, new_phone_display, new_email,
            new_consent_at, new_consent_version, seat.status, stamp, stamp, new_csv_cells,
            new_csv_rule, CASE WHEN seat.status = 'waiting' THEN stamp END, new_source
        FROM (
            -- Everyone waiting counts as taking a seat, as in Registrations.create.
            SELECT CASE WHEN e.capacity IS NULL OR (
                SELECT count(*) FROM registrations AS taken
                WHERE taken.event_id = new_event_id AND taken.status IN ('confirmed', 'waiting')
            ) < e.capacity THEN 'confirmed' ELSE 'waiting' END AS status
            FROM events AS e WHERE e.id = new_event_id
        ) AS seat
        RETURNING r.* INTO made;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        INSERT INTO answers (registration_id, question_id, value)
            SELECT made.id, a.question_id, a.value
            FROM unnest(question_ids, answer_values) AS a (question_id, value);
        IF made.status = 'waiting' THEN
            SELECT count(*) INTO place FROM registrations AS ahead
            WHERE ahead.event_id = made.event_id AND ahead.status = 'waiting'
                AND (ahead.queued_at, ahead.id) <= (made.queued_at, made.id);
        END IF;
        card := replace(
            replace(
                CASE WHEN made.status = 'waiting' THEN card_waiting ELSE card_confirmed END,
                '<#id>', made.id::TEXT),
            '<#place>', coalesce(place::TEXT, '—'));
        INSERT INTO outbox (chat_id, kind, registration_id, text, created_at, status, error)
        SELECT target.chat_id, 'card', made.id, card, stamp,
            CASE WHEN chats.unreachable IS NULL THEN 'pending' ELSE 'failed' END,
            chats.unreachable
        FROM (
            SELECT COALESCE(
                (SELECT moved.moved_to FROM chats AS moved
                 WHERE moved.chat_id = c.chat AND moved.moved_to IS NOT NULL),
                c.chat
            ) AS chat_id, c.n
            FROM unnest(card_chats) WITH ORDINALITY AS c (chat, n)
        ) AS target
        LEFT JOIN chats ON chats.chat_id = target.chat_id
        ORDER BY target.n;
        registration := made;
        RETURN NEXT;
    END $$;
    """,
    # SQLite's step 22: each session's seats counted where they change. The triggers run one
    # function; `create_registration` (step 21) decides the seat and the place in line from
    # the counts. PostgreSQL walks every version of a row updated again in one transaction
    # (here 10,000 updates of one row in one transaction took 0.8 s, 40,000 took 11 s): the
    # writes that change many registrations come in batches (retention's, offers of a raised
    # capacity: 500 each), and the move from SQLite (storage/transfer.py) turns the insert
    # trigger off and counts once.
    22: """
    ALTER TABLE events ADD COLUMN seats_confirmed BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN seats_waiting BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN seats_offered BIGINT NOT NULL DEFAULT 0;
    UPDATE events SET
        seats_confirmed = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'confirmed'),
        seats_waiting = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'waiting'),
        seats_offered = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'waiting' AND offered_at IS NOT NULL);
    CREATE FUNCTION registrations_seats() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP != 'INSERT' THEN
            UPDATE events SET
                seats_confirmed = seats_confirmed - (OLD.status = 'confirmed')::INTEGER,
                seats_waiting = seats_waiting - (OLD.status = 'waiting')::INTEGER,
                seats_offered = seats_offered - (OLD.offered_at IS NOT NULL)::INTEGER
            WHERE id = OLD.event_id;
        END IF;
        IF TG_OP != 'DELETE' THEN
            UPDATE events SET
                seats_confirmed = seats_confirmed + (NEW.status = 'confirmed')::INTEGER,
                seats_waiting = seats_waiting + (NEW.status = 'waiting')::INTEGER,
                seats_offered = seats_offered + (NEW.offered_at IS NOT NULL)::INTEGER
            WHERE id = NEW.event_id;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER registrations_seats_insert AFTER INSERT ON registrations
        FOR EACH ROW WHEN (NEW.status != 'withdrawn') EXECUTE FUNCTION registrations_seats();
    CREATE TRIGGER registrations_seats_update AFTER UPDATE OF status, offered_at, event_id
        ON registrations FOR EACH ROW
        WHEN (NEW.status IS DISTINCT FROM OLD.status OR NEW.event_id IS DISTINCT FROM OLD.event_id
            OR (NEW.offered_at IS NULL) != (OLD.offered_at IS NULL))
        EXECUTE FUNCTION registrations_seats();
    CREATE TRIGGER registrations_seats_delete AFTER DELETE ON registrations
        FOR EACH ROW WHEN (OLD.status != 'withdrawn') EXECUTE FUNCTION registrations_seats();
    CREATE OR REPLACE FUNCTION create_registration(
        serial_lock BIGINT, new_event_id TEXT, new_user_id BIGINT, new_username TEXT,
        new_telegram_name TEXT, new_full_name TEXT, new_position TEXT, new_organization TEXT,
        new_phone TEXT, new_phone_display TEXT, new_email TEXT, new_consent_at TIMESTAMPTZ,
        new_consent_version TEXT, stamp TIMESTAMPTZ, new_csv_cells TEXT, new_csv_rule TEXT,
        new_source TEXT, question_ids TEXT[], answer_values TEXT[], card_chats BIGINT[],
        card_confirmed TEXT, card_waiting TEXT
    ) RETURNS TABLE (registration registrations, place BIGINT)
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        made registrations;
        card TEXT;
    BEGIN
        -- First, in a statement of its own: each statement below takes its snapshot after
        -- the lock is granted, so the seats counted include every registration committed
        -- before (a lock taken inside the INSERT would come after the INSERT's snapshot).
        PERFORM pg_advisory_xact_lock(serial_lock);
        INSERT INTO registrations AS r (
            event_id, user_id, username, telegram_name, full_name, position, organization,
            phone, phone_display, email, consent_at, consent_version, status, created_at,
            updated_at, csv_cells, csv_rule, queued_at, source
        )
        SELECT new_event_id, new_user_id, new_username, new_telegram_name, new_full_name,
            new_position, new_organization, new_phone, new_phone_display, new_email,
            new_consent_at, new_consent_version, seat.status, stamp, stamp, new_csv_cells,
            new_csv_rule, CASE WHEN seat.status = 'waiting' THEN stamp END, new_source
        FROM (
            -- Everyone waiting counts as taking a seat, as in Registrations.create.
            SELECT CASE WHEN e.capacity IS NULL
                OR e.seats_confirmed + e.seats_waiting < e.capacity
                THEN 'confirmed' ELSE 'waiting' END AS status
            FROM events AS e WHERE e.id = new_event_id
        ) AS seat
        RETURNING r.* INTO made;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        INSERT INTO answers (registration_id, question_id, value)
            SELECT made.id, a.question_id, a.value
            FROM unnest(question_ids, answer_values) AS a (question_id, value);
        IF made.status = 'waiting' THEN
            -- As in Registrations.create: everyone waiting, less those behind.
            SELECT e.seats_waiting - (
                SELECT count(*) FROM registrations AS behind
                WHERE behind.event_id = made.event_id AND behind.status = 'waiting'
                    AND (behind.queued_at, behind.id) > (made.queued_at, made.id)
            ) INTO place FROM events AS e WHERE e.id = made.event_id;
        END IF;
        card := replace(
            replace(
                CASE WHEN made.status = 'waiting' THEN card_waiting ELSE card_confirmed END,
                '<#id>', made.id::TEXT),
            '<#place>', coalesce(place::TEXT, '—'));
        INSERT INTO outbox (chat_id, kind, registration_id, text, created_at, status, error)
        SELECT target.chat_id, 'card', made.id, card, stamp,
            CASE WHEN chats.unreachable IS NULL THEN 'pending' ELSE 'failed' END,
            chats.unreachable
        FROM (
            SELECT COALESCE(
                (SELECT moved.moved_to FROM chats AS moved
                 WHERE moved.chat_id = c.chat AND moved.moved_to IS NOT NULL),
                c.chat
            ) AS chat_id, c.n
            FROM unnest(card_chats) WITH ORDINALITY AS c (chat, n)
        ) AS target
        LEFT JOIN chats ON chats.chat_id = target.chat_id
        ORDER BY target.n;
        registration := made;
        RETURN NEXT;
    END $$;
    """,
}
