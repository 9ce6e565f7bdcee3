-- The retention indexes of 0005 cost the send path more than the purge gains from them
-- (docs/BENCHMARKS.md, sending run 14): every recorded send inserted into a B-tree on
-- provider_messages.created_at, and moving open_surveys.expires_at, an indexed column,
-- made each record's update of the slot a new tuple with a new entry in every index of
-- the table instead of a heap-only (HOT) update.

-- Append-only tables, dated by insertion: a BRIN index summarises each range of pages by
-- its dates, costs next to nothing per insert, and still finds the old ranges to purge.
DROP INDEX provider_messages_created;
CREATE INDEX provider_messages_created ON provider_messages USING brin (created_at);
DROP INDEX inbound_messages_received;
CREATE INDEX inbound_messages_received ON inbound_messages USING brin (received_at);

-- Slots are updated in place (expiry moved when the send is recorded, a new request
-- taking over an expired slot), so their dates do not follow their pages and a BRIN
-- index would stop HOT updates on PostgreSQL 15 just as a B-tree does. The janitor
-- sweeps the table by ranges of pages instead (RetentionRepository.sweepPages), and
-- pages keep room for the one update each slot gets, so that it can stay on its page.
DROP INDEX open_surveys_expires;
ALTER TABLE open_surveys SET (fillfactor = 50);
