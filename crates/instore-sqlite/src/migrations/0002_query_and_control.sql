-- Query and control (SPEC §10, §12; decision 0007).

-- updated_by: the machine of the owner that created the row, then of each save's owner.
-- locked_since: when the current lock holder took the lock (cleared on unlock).
alter table instances add column updated_by text;
alter table instances add column locked_since integer;

-- condition: instore::Condition::of over state, status and suspension, as Condition::code:
-- 1 active, 2 idle, 3 exception, 4 user suspension, 5 successful, 6 terminated, 7 canceled,
-- 8 faulted. Status follows from it: 1-2 running, 3-4 suspended, 5-8 completed.
alter table instances add column condition integer generated always as (
    case
        when state = 3 then case status when 6 then 6 when 5 then 7 when 4 then 8 else 5 end
        when suspended <> 0 then case when exception_name is null then 4 else 3 end
        when status = 1 then 1
        else 2
    end
) virtual;

-- Rows written by schema 1: their last locking owner's machine (if it is still registered);
-- a held lock counts from the row's last change, the best instant schema 1 kept.
update instances set updated_by = (select machine from owners where owners.id = instances.last_lock_owner)
    where last_lock_owner in (select id from owners);
update instances set locked_since = updated_at where lock_owner is not null;

-- Query order (newest first) and its keyset cursor; filtered pages by condition (status), by
-- host type and condition; group counts by condition or host type read these indexes only.
create index instances_created on instances (created_at, id);
create index instances_condition on instances (condition, created_at, id);
create index instances_host_type on instances (host_type, condition, created_at, id);
create index instances_exception on instances (exception_name, created_at, id) where exception_name is not null;
-- Retention: completed instances by last change.
create index instances_completed on instances (updated_at, id) where state = 3;

-- Instances per host type ('' for none), condition and last writer's machine (has_updated_by
-- 0 for none), kept by triggers in the same transaction as every change, so counts and group
-- counts by status, condition, host type and machine answer from a handful of rows instead of
-- scanning a million index entries.
create table instance_counts (
    host_type text not null,
    condition integer not null,
    has_updated_by integer not null,
    updated_by text not null,
    n integer not null,
    primary key (host_type, condition, has_updated_by, updated_by)
) without rowid;
insert into instance_counts (host_type, condition, has_updated_by, updated_by, n)
    select coalesce(host_type, ''), condition, updated_by is not null, coalesce(updated_by, ''), count(*)
    from instances group by 1, 2, 3, 4;
create trigger instance_counts_insert after insert on instances begin
    insert into instance_counts (host_type, condition, has_updated_by, updated_by, n)
        values (coalesce(new.host_type, ''), new.condition, new.updated_by is not null, coalesce(new.updated_by, ''), 1)
        on conflict (host_type, condition, has_updated_by, updated_by) do update set n = n + 1;
end;
create trigger instance_counts_delete after delete on instances begin
    update instance_counts set n = n - 1
        where host_type = coalesce(old.host_type, '') and condition = old.condition
          and has_updated_by = (old.updated_by is not null) and updated_by = coalesce(old.updated_by, '');
end;
create trigger instance_counts_update after update of state, status, suspended, exception_name, host_type, updated_by
    on instances
    when old.condition is not new.condition or old.host_type is not new.host_type
      or old.updated_by is not new.updated_by begin
    update instance_counts set n = n - 1
        where host_type = coalesce(old.host_type, '') and condition = old.condition
          and has_updated_by = (old.updated_by is not null) and updated_by = coalesce(old.updated_by, '');
    insert into instance_counts (host_type, condition, has_updated_by, updated_by, n)
        values (coalesce(new.host_type, ''), new.condition, new.updated_by is not null, coalesce(new.updated_by, ''), 1)
        on conflict (host_type, condition, has_updated_by, updated_by) do update set n = n + 1;
end;

-- Promoted values: one row per instance and name. text: instore::promoted_text (what filters
-- compare); kind + value: the typed value, for an exact round trip.
create table promoted (
    instance blob not null,
    name text not null,
    text text,
    kind integer not null,
    value,
    primary key (instance, name)
) without rowid;
create index promoted_text on promoted (name, text, instance);

-- The control queue: at most one command per instance. position grows with every enqueue
-- (counters.queue_position). command: ControlCommand::code. lock: the last read's lock (uuid),
-- locked_until its expiry, reader the machine that read it.
create table control_queue (
    instance blob primary key,
    position integer not null,
    command integer not null,
    reason text,
    enqueued_at integer not null,
    attempts integer not null,
    lock blob,
    locked_until integer,
    reader text,
    last_error text
) without rowid;
create unique index control_queue_position on control_queue (position);

-- The error log: the last command given up, one row per instance.
create table error_log (
    instance blob primary key,
    command integer not null,
    reason text,
    code text not null,
    message text not null,
    last_attempt_at integer not null,
    machine text not null,
    attempts integer not null
) without rowid;
create index error_log_recent on error_log (last_attempt_at, instance);

create table counters (
    name text primary key,
    value integer not null
) without rowid;
insert into counters (name, value) values ('queue_position', 0);
