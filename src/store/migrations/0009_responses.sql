-- Responses of the OpenAI Responses API kept for `previous_response_id` (`store: true`):
-- each row is one exchange, its new input items and the items it produced, linked to
-- the response it continued. A later request walks the links back to rebuild the
-- whole conversation.

CREATE TABLE responses (
    seq         INTEGER PRIMARY KEY,
    -- Public id (`resp_…`).
    id          TEXT NOT NULL UNIQUE,
    -- NULL: the anonymous principal of a daemon without authentication.
    user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE,
    -- The response this one continued; deleting it deletes the continuations, whose
    -- history would be gone.
    previous_id TEXT REFERENCES responses (id) ON DELETE CASCADE,
    model       TEXT NOT NULL,
    -- The request's input items (Responses item JSON), instructions excluded: they
    -- are not carried over to a continuation.
    input       TEXT NOT NULL CHECK (json_valid(input) AND json_type(input) = 'array'),
    -- The output items the model produced.
    output      TEXT NOT NULL CHECK (json_valid(output) AND json_type(output) = 'array'),
    created_at  TEXT NOT NULL
) STRICT;

CREATE INDEX responses_by_previous ON responses (previous_id);
CREATE INDEX responses_by_user ON responses (user_id, seq DESC);
