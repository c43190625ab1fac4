-- instore on PostgreSQL, schema version 2: the query side and the control queue (SPEC §10, §12;
-- decision 0007).
--
-- New instance columns (updated_by, locked_since, the generated condition), promoted values, the
-- control queue and the error log; the write paths that must now keep the new columns are
-- replaced (`acquire`, `load`, `unlock`, `try_load_runnable`; `save` takes promoted values, so
-- it is dropped and created anew). Control commands are functions, one call each.

-- Instances. `created_at` and `updated_at` exist since version 1; from now on only creation and
-- saves move `updated_at` (version 1 also moved it on loads and unlocks).
alter table {{s}}.instances
    add column updated_by text,
    add column locked_since bigint,
    -- Condition::code of Condition::of(state, status, suspension): completed → 6 terminated,
    -- 7 canceled, 8 faulted, else 5 successful; suspended → 3 with an exception, else 4;
    -- running → 1 executing, else 2 idle.
    add column condition smallint generated always as (
        case
            when state = 3 then case status when 6 then 6 when 5 then 7 when 4 then 8 else 5 end
            when suspended and exception_name is not null then 3
            when suspended then 4
            when status = 1 then 1
            else 2
        end
    ) stored;

-- Existing rows: the last locking owner's machine as the last writer, the last change as the
-- lock's start.
update {{s}}.instances i set
    updated_by = (select o.machine from {{s}}.owners o where o.id = i.last_lock_owner),
    locked_since = case when i.lock_owner is not null then i.updated_at end;

-- Pages are newest first: (created_at, id) descending, keyset cursor over the same columns.
create index instances_created on {{s}}.instances (created_at desc, id desc);
-- Status and condition filters of rare conditions, and counts by status or condition: an
-- index-only scan of a small index (eight values, deduplicated: ~7 MB per million instances).
create index instances_condition on {{s}}.instances (condition);
-- Pages of one host type, or of one exception, in page order.
create index instances_host_type on {{s}}.instances (host_type, created_at desc, id desc);
create index instances_exception on {{s}}.instances (exception_name, created_at desc, id desc)
    where suspended;
-- Retention: completed instances, least recently changed first.
create index instances_purge on {{s}}.instances (updated_at, id) where state = 3;

-- How many instances there are per condition, host type and last writer's machine, without
-- counting rows: `instance_counts` holds the totals, and every change of one of the three
-- (creation, a save or lock that changes one, deletion) appends delta rows in the same
-- transaction. Appending takes no lock another writer could wait on (a total updated in place
-- would serialise every host's saves, and could deadlock them). Readers add totals and deltas
-- up (`instance_totals_now`), and fold the deltas into the totals once they are many
-- (`fold_instance_counts`, one reader at a time).
create table {{s}}.instance_counts (
    condition smallint not null,
    host_type text,
    updated_by text,
    n bigint not null
);
create unique index instance_counts_key on {{s}}.instance_counts (condition, host_type, updated_by)
    nulls not distinct;
create table {{s}}.instance_count_deltas (
    condition smallint not null,
    host_type text,
    updated_by text,
    delta int not null
);
insert into {{s}}.instance_counts (condition, host_type, updated_by, n)
select condition, host_type, updated_by, count(*) from {{s}}.instances
group by condition, host_type, updated_by;

create function {{s}}.count_instance() returns trigger
language plpgsql as $$
begin
    if tg_op in ('UPDATE', 'DELETE') then
        insert into {{s}}.instance_count_deltas (condition, host_type, updated_by, delta)
        values (old.condition, old.host_type, old.updated_by, -1);
    end if;
    if tg_op in ('UPDATE', 'INSERT') then
        insert into {{s}}.instance_count_deltas (condition, host_type, updated_by, delta)
        values (new.condition, new.host_type, new.updated_by, 1);
    end if;
    return null;
end
$$;
create trigger instances_count_insert after insert on {{s}}.instances
    for each row execute function {{s}}.count_instance();
create trigger instances_count_update after update on {{s}}.instances
    for each row
    when (old.condition is distinct from new.condition
          or old.host_type is distinct from new.host_type
          or old.updated_by is distinct from new.updated_by)
    execute function {{s}}.count_instance();
create trigger instances_count_delete after delete on {{s}}.instances
    for each row execute function {{s}}.count_instance();

-- The totals as of the reading statement's snapshot (groups of none left out).
create view {{s}}.instance_totals_now as
select t.condition, t.host_type, t.updated_by, sum(t.n)::bigint as n from (
    select c.condition, c.host_type, c.updated_by, c.n from {{s}}.instance_counts c
    union all
    select d.condition, d.host_type, d.updated_by, d.delta::bigint
    from {{s}}.instance_count_deltas d
) t
group by t.condition, t.host_type, t.updated_by
having sum(t.n) <> 0;

-- With `p_fold_after` deltas or more pending, folds them into the totals, unless another call is
-- folding right now. Whether it folded. (Called within a reading statement, whose snapshot does
-- not see the fold: the statement reads the totals as they were, the next one as they are.)
create function {{s}}.fold_instance_counts(p_fold_after int) returns boolean
language plpgsql as $$
begin
    if (select count(*) from (select 1 from {{s}}.instance_count_deltas
                              limit greatest(p_fold_after, 1)) d) < p_fold_after
       or not pg_try_advisory_xact_lock(hashtext({{channel}} || ' instance counts')) then
        return false;
    end if;
    with folded as (
        delete from {{s}}.instance_count_deltas
        returning condition, host_type, updated_by, delta
    )
    insert into {{s}}.instance_counts as c (condition, host_type, updated_by, n)
    select f.condition, f.host_type, f.updated_by, sum(f.delta) from folded f
    group by f.condition, f.host_type, f.updated_by
    on conflict (condition, host_type, updated_by) do update set n = c.n + excluded.n;
    delete from {{s}}.instance_counts c where c.n = 0;
    return true;
end
$$;

-- The number of instances per condition, host type and — with `p_by_machine` — machine
-- (`InstanceInfo::machine`: the live lock holder's, else the last writer's) at `p_now`: the
-- totals by last writer, with the instances a live owner on another machine holds moved to that
-- machine (those rows are read). Without `p_by_machine` the machine is null. Folds first if due.
create function {{s}}.instance_totals(p_fold_after int, p_now bigint, p_by_machine boolean)
returns table (condition smallint, host_type text, machine text, n bigint)
language plpgsql as $$
#variable_conflict use_column
declare
    v_now bigint := {{s}}.now_us(p_now);
begin
    perform {{s}}.fold_instance_counts(p_fold_after);
    if not p_by_machine then
        return query
        select t.condition, t.host_type, null::text, sum(t.n)::bigint
        from {{s}}.instance_totals_now t
        group by t.condition, t.host_type;
        return;
    end if;
    return query
    with moved as (
        select i.condition, i.host_type, i.updated_by as from_machine, o.machine as to_machine
        from {{s}}.instances i join {{s}}.owners o on o.id = i.lock_owner
        where i.lock_owner is not null and o.lease_expires_at > v_now
          and o.machine is distinct from i.updated_by
    )
    select x.condition, x.host_type, x.machine, sum(x.n)::bigint from (
        select t.condition, t.host_type, t.updated_by as machine, t.n
        from {{s}}.instance_totals_now t
        union all
        select m.condition, m.host_type, m.from_machine, -1::bigint from moved m
        union all
        select m.condition, m.host_type, m.to_machine, 1::bigint from moved m
    ) x
    group by x.condition, x.host_type, x.machine
    having sum(x.n) <> 0;
end
$$;

-- Promoted values (SPEC §12 "Promotions"): the text operators filter on, and the value itself
-- (the postcard encoding of its bag entry) so it reads back typed.
create table {{s}}.promoted (
    instance uuid not null,
    name text not null,
    -- Null for a value that is not promotable (never matches a filter).
    text_value text,
    value bytea not null,
    primary key (instance, name)
);
create index promoted_lookup on {{s}}.promoted (name, text_value);

-- The control queue (SPEC §10): at most one command per instance. `position` grows with every
-- enqueue; `lock_id` is the reader's lock while it is taken (expired once locked_until <= now);
-- attempts counts failures. Rows are deleted when done or given up.
-- command: 1 suspend, 2 resume, 3 terminate, 4 cancel.
create sequence {{s}}.control_position;
create table {{s}}.control_queue (
    instance uuid primary key,
    position bigint not null,
    command smallint not null,
    reason text,
    enqueued_at bigint not null,
    attempts int not null default 0,
    lock_id uuid,
    locked_until bigint,
    reader text,
    last_error text
);
create unique index control_queue_position on {{s}}.control_queue (position);

-- The error log (SPEC §10 rule 8): the last command given up, per instance.
create table {{s}}.error_log (
    instance uuid primary key,
    command smallint not null,
    reason text,
    code text not null,
    message text not null,
    last_attempt_at bigint not null,
    machine text not null,
    attempts int not null
);
create index error_log_recent on {{s}}.error_log (last_attempt_at desc, instance desc);

-- Removes what belongs to an instance beside its rows in `instances` and `instance_data`.
create function {{s}}.forget(p_id uuid) returns void
language plpgsql as $$
begin
    delete from {{s}}.keys where instance = p_id;
    delete from {{s}}.promoted where instance = p_id;
    delete from {{s}}.control_queue where instance = p_id;
    delete from {{s}}.error_log where instance = p_id;
end
$$;

-- Takes the lock of the existing row `r` (after can_acquire), or of a new uninitialized instance.
-- The lock's start moves only when the owner did not hold it; the row's change time does not.
create or replace function {{s}}.acquire(p_owner uuid, p_id uuid, r {{s}}.instances, p_now bigint)
returns {{s}}.instances
language plpgsql as $$
declare
    o {{s}}.owners;
    out {{s}}.instances;
begin
    select * into o from {{s}}.owners where id = p_owner;
    if r.id is null then
        insert into {{s}}.instances (id, state, lock_owner, last_lock_owner, lock_version, status,
                                     host_type, created_at, updated_at, updated_by, locked_since)
        values (p_id, 1, p_owner, p_owner, 1, 2, o.host_type, p_now, p_now, o.machine, p_now)
        returning * into out;
        insert into {{s}}.instance_data (id, data, data_encoding, data_len, data_md5, metadata)
        values (p_id, '\x00'::bytea, 1, 1, md5('\x00'::bytea), '{}'::jsonb);
        return out;
    end if;
    update {{s}}.instances set
        lock_version = lock_version
            + case when last_lock_owner is distinct from p_owner then 1 else 0 end,
        locked_since = case when lock_owner is distinct from p_owner then p_now
                            else locked_since end,
        lock_owner = p_owner,
        last_lock_owner = p_owner,
        ready_at = null,
        host_type = coalesce(o.host_type, host_type)
    where id = p_id
    returning * into out;
    return out;
end
$$;

-- Load (SPEC §6.2, §6.3). p_key null: by id. Returns the snapshot with the lock held.
-- (Version 1's, creating by id with the creator's machine and the lock's start.)
create or replace function {{s}}.load(
    p_now bigint, p_owner uuid, p_held bigint, p_id uuid, p_key uuid, p_accept boolean,
    p_keys uuid[], p_key_metadata bytea[], p_key_encodings smallint[], p_busy uuid[],
    p_reject_suspended boolean
) returns {{s}}.snapshot
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    r {{s}}.instances;
    k {{s}}.keys;
    o {{s}}.owners;
begin
    if p_held is not null then
        r := {{s}}.check_held(p_owner, p_id, p_held, v_now);
        perform {{s}}.check_intact(r.id);
        return {{s}}.snapshot_of(r.id, true, true);
    end if;
    perform {{s}}.check_caller(p_owner, v_now);

    if p_key is null then
        -- By id.
        r := {{s}}.locked_row(p_id);
        if r.id is null and p_accept then
            -- Create it, locked. A concurrent creator makes this a no-op (after waiting for it to
            -- commit); then its row is there to be judged like any other.
            select * into o from {{s}}.owners where id = p_owner;
            insert into {{s}}.instances (id, state, lock_owner, last_lock_owner, lock_version,
                                         status, host_type, created_at, updated_at, updated_by,
                                         locked_since)
            values (p_id, 1, p_owner, p_owner, 1, 2, o.host_type, v_now, v_now, o.machine, v_now)
            on conflict (id) do nothing;
            if found then
                insert into {{s}}.instance_data (id, data, data_encoding, data_len, data_md5,
                                                 metadata)
                values (p_id, '\x00'::bytea, 1, 1, md5('\x00'::bytea), '{}'::jsonb);
                return {{s}}.snapshot_of(p_id, true, true);
            end if;
            r := {{s}}.locked_row(p_id);
        end if;
        if r.id is null then
            perform {{s}}.fail('instance_not_ready', jsonb_build_object('instance', p_id));
        elsif r.state = 3 then
            perform {{s}}.fail('instance_complete', jsonb_build_object('instance', p_id));
        elsif r.state = 1 and not p_accept then
            perform {{s}}.fail('instance_not_ready', jsonb_build_object('instance', p_id));
        end if;
        perform {{s}}.check_guards(r, p_reject_suspended);
        perform {{s}}.can_acquire(p_owner, r, p_busy, v_now);
        perform {{s}}.check_intact(r.id);
        r := {{s}}.acquire(p_owner, p_id, r, v_now);
        return {{s}}.snapshot_of(r.id, true, true);
    end if;

    -- By key. The instance row is always locked before its keys change, so lock order is
    -- instance → keys everywhere.
    loop
        select * into k from {{s}}.keys where id = p_key;
        if found then
            if k.state = 2 then
                perform {{s}}.fail('instance_key_complete', jsonb_build_object('key', p_key));
            end if;
            r := {{s}}.locked_row(k.instance);
            -- The key may have moved while we waited for the row: look again.
            continue when not exists (select 1 from {{s}}.keys
                                      where id = p_key and instance = k.instance and state = 1);
            if r.id is null then
                perform {{s}}.fail('instance_key_not_ready', jsonb_build_object('key', p_key));
            elsif r.state = 3 then
                perform {{s}}.fail('instance_complete', jsonb_build_object('instance', r.id));
            elsif r.state = 1 and not p_accept then
                perform {{s}}.fail('instance_not_ready', jsonb_build_object('instance', r.id));
            end if;
            perform {{s}}.check_guards(r, p_reject_suspended);
            perform {{s}}.can_acquire(p_owner, r, p_busy, v_now);
            perform {{s}}.associate(r.id, p_keys, p_key_metadata, p_key_encodings, null);
            perform {{s}}.check_intact(r.id);
            r := {{s}}.acquire(p_owner, r.id, r, v_now);
            return {{s}}.snapshot_of(r.id, true, true);
        end if;
        if not p_accept then
            perform {{s}}.fail('instance_key_not_ready', jsonb_build_object('key', p_key));
        end if;
        -- A new key: claim it first (racing creators of one key wait here for the winner),
        -- then create or take the instance `p_id` (the caller's id, or a random one). The
        -- lookup key takes its metadata from `p_keys` if listed there.
        insert into {{s}}.keys (id, instance, state, metadata, metadata_encoding)
        select p_key, p_id, 1, coalesce(m.metadata, '\x00'::bytea), coalesce(m.encoding, 1)
        from (select null) one
        left join lateral (
            select p_key_metadata[i] as metadata, p_key_encodings[i] as encoding
            from generate_subscripts(p_keys, 1) i where p_keys[i] = p_key limit 1
        ) m on true
        on conflict (id) do nothing;
        continue when not found;
        r := {{s}}.locked_row(p_id);
        if r.id is not null then
            if r.state <> 1 then
                perform {{s}}.fail('instance_collision', jsonb_build_object('instance', p_id));
            end if;
            perform {{s}}.check_guards(r, p_reject_suspended);
            perform {{s}}.can_acquire(p_owner, r, p_busy, v_now);
        end if;
        perform {{s}}.associate(p_id, p_keys, p_key_metadata, p_key_encodings, p_key);
        if r.id is not null then
            perform {{s}}.check_intact(r.id);
        end if;
        r := {{s}}.acquire(p_owner, p_id, r, v_now);
        return {{s}}.snapshot_of(p_id, true, true);
    end loop;
end
$$;

-- Save (SPEC §6.4), as in version 1, and: the saving owner's machine as the last writer, the
-- instance's promoted values replaced when `p_promoted_names` is not null, the lock's start
-- cleared on unlock, and everything of the instance removed when completion deletes it.
drop function {{s}}.save(
    bigint, uuid, uuid, bigint, uuid[], boolean, bytea, smallint, bigint, boolean, text[], jsonb,
    jsonb, text, uuid[], bytea[], smallint[], uuid[], uuid[], bigint, smallint, text[], smallint,
    text, text, text, boolean, boolean, bigint, boolean);

create function {{s}}.save(
    p_now bigint, p_owner uuid, p_id uuid, p_held bigint, p_busy uuid[],
    p_has_data boolean, p_data bytea, p_data_encoding smallint, p_data_len bigint,
    p_data_droppable boolean,
    p_meta_delete text[], p_meta_set jsonb, p_metadata jsonb, p_metadata_base text,
    p_assoc uuid[], p_assoc_metadata bytea[], p_assoc_encodings smallint[],
    p_complete_keys uuid[], p_free_keys uuid[],
    p_timer bigint, p_status smallint, p_bookmarks text[],
    p_suspend smallint, p_reason text, p_exception_name text, p_exception_message text,
    p_complete boolean, p_unlock boolean, p_limit bigint, p_delete_all boolean,
    p_promoted_names text[], p_promoted_texts text[], p_promoted_values bytea[]
) returns {{s}}.snapshot
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    r {{s}}.instances;
    d {{s}}.instance_data;
    v_meta jsonb;
    v_size bigint;
    v_drop text;
    v_key uuid;
    v_state smallint;
    v_inst uuid;
    v_snapshot {{s}}.snapshot;
    v_runnable boolean := false;
begin
    if p_held is not null then
        r := {{s}}.check_held(p_owner, p_id, p_held, v_now);
    else
        perform {{s}}.check_caller(p_owner, v_now);
        r := {{s}}.locked_row(p_id);
        perform {{s}}.can_acquire(p_owner, r, p_busy, v_now);
    end if;
    if r.id is not null then
        select * into d from {{s}}.instance_data where id = p_id;
        if not p_has_data then
            perform {{s}}.check_intact(p_id);
        end if;
    end if;

    -- The rest checks as it applies, in the order of SPEC §6.4; a failure raises and undoes the
    -- whole call.
    if p_held is null then
        r := {{s}}.acquire(p_owner, p_id, r, v_now);
    end if;

    -- Keys, in order: associate, complete, free.
    perform {{s}}.associate(p_id, p_assoc, p_assoc_metadata, p_assoc_encodings, null);
    foreach v_key in array coalesce(p_complete_keys, '{}'::uuid[]) loop
        select instance, state into v_inst, v_state from {{s}}.keys where id = v_key for update;
        if found and v_inst = p_id and v_state = 1 then
            update {{s}}.keys set state = 2 where id = v_key;
        elsif found and v_inst = p_id and v_state = 2 then
            perform {{s}}.fail('instance_key_complete', jsonb_build_object('key', v_key));
        else
            perform {{s}}.fail('instance_key_not_ready', jsonb_build_object('key', v_key));
        end if;
    end loop;
    foreach v_key in array coalesce(p_free_keys, '{}'::uuid[]) loop
        delete from {{s}}.keys where id = v_key and instance = p_id and state = 2;
        if not found then
            perform {{s}}.fail('instance_key_not_ready', jsonb_build_object('key', v_key));
        end if;
    end loop;

    -- Metadata: merge, then fit the size limit.
    if p_metadata is not null then
        if md5(coalesce(d.metadata, '{}'::jsonb)::text) is distinct from p_metadata_base then
            perform {{s}}.fail('metadata_moved', jsonb_build_object('instance', p_id));
        end if;
        v_meta := p_metadata;
    else
        v_meta := (coalesce(d.metadata, '{}'::jsonb) - coalesce(p_meta_delete, '{}'::text[]))
                  || coalesce(p_meta_set, '{}'::jsonb);
    end if;
    loop
        if p_has_data then
            v_size := p_data_len + {{s}}.bag_len(v_meta);
            exit when v_size <= p_limit;
        else
            v_size := 1 + {{s}}.bag_len(v_meta);
            exit when v_size <= greatest(p_limit - coalesce(d.data_len, 0), 0);
            v_size := v_size + coalesce(d.data_len, 0);
        end if;
        if p_has_data and p_data_droppable then
            -- Optional data values may have to go: the client decides (it holds the data).
            perform {{s}}.fail('resolve_size', jsonb_build_object('instance', p_id,
                'metadata', v_meta, 'base', md5(coalesce(d.metadata, '{}'::jsonb)::text)));
        end if;
        v_drop := {{s}}.largest_optional(v_meta);
        if v_drop is null then
            perform {{s}}.fail('payload_too_large',
                jsonb_build_object('size', v_size, 'limit', p_limit));
        end if;
        v_meta := v_meta - v_drop;
    end loop;

    -- Blobs.
    if p_has_data then
        update {{s}}.instance_data set data = p_data, data_encoding = p_data_encoding,
            data_len = p_data_len, data_md5 = md5(p_data), metadata = v_meta
        where id = p_id;
    else
        update {{s}}.instance_data set metadata = v_meta where id = p_id;
    end if;

    -- Promoted values: replaced whole when given.
    if p_promoted_names is not null then
        delete from {{s}}.promoted where instance = p_id;
        insert into {{s}}.promoted (instance, name, text_value, value)
        select p_id, n, t, v
        from unnest(p_promoted_names, p_promoted_texts, p_promoted_values) as u(n, t, v);
    end if;

    -- Scheduling columns.
    update {{s}}.instances set
        updated_at = v_now,
        updated_by = coalesce((select machine from {{s}}.owners where id = p_owner), updated_by),
        state = case when p_complete then 3 when p_has_data then 2 else state end,
        timer = case when p_complete then null when p_has_data then p_timer else timer end,
        status = case when p_has_data then p_status else status end,
        bookmarks = case when p_has_data then coalesce(p_bookmarks, '{}') else bookmarks end,
        suspended = case p_suspend when 1 then true when 2 then false else suspended end,
        suspension_reason = case p_suspend when 1 then p_reason when 2 then null
                                 else suspension_reason end,
        exception_name = case p_suspend when 1 then p_exception_name when 2 then null
                              else exception_name end,
        exception_message = case p_suspend when 1 then p_exception_message when 2 then null
                                 else exception_message end
    where id = p_id
    returning * into r;
    if p_complete then
        update {{s}}.keys set state = 2 where instance = p_id;
    end if;
    if p_unlock then
        update {{s}}.instances set lock_owner = null, locked_since = null,
            ready_at = {{s}}.ready_at(r, v_now)
        where id = p_id
        returning * into r;
        v_runnable := r.ready_at is not null;
    end if;

    v_snapshot := {{s}}.snapshot_of(p_id, not p_unlock, not p_has_data);
    if p_complete and p_delete_all then
        perform {{s}}.forget(p_id);
        delete from {{s}}.instance_data where id = p_id;
        delete from {{s}}.instances where id = p_id;
    end if;
    if v_runnable then
        perform pg_notify({{channel}}, '');
    end if;
    return v_snapshot;
end
$$;

-- Releases the caller's lock if it still holds it (any version). Not a change of the instance:
-- `updated_at` stays.
create or replace function {{s}}.unlock(p_now bigint, p_owner uuid, p_id uuid) returns void
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    r {{s}}.instances;
begin
    select * into r from {{s}}.instances where id = p_id and lock_owner = p_owner for update;
    if not found then
        return;
    end if;
    update {{s}}.instances set lock_owner = null, locked_since = null,
        ready_at = {{s}}.ready_at(r, v_now)
    where id = p_id
    returning * into r;
    if r.ready_at is not null then
        perform pg_notify({{channel}}, '');
    end if;
end
$$;

-- TryLoadRunnable, as in version 1; a damaged row taken out of the runnable set loses its lock's
-- start with its lock.
create or replace function {{s}}.try_load_runnable(
    p_now bigint, p_owner uuid, p_host_type text, p_reject_suspended boolean, p_skip uuid[]
) returns {{s}}.snapshot
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    c record;
    r {{s}}.instances;
    v_intact boolean;
    v_page int := 32;
    v_seen int;
    v_after_since bigint := -9223372036854775808;
    v_after_id uuid := '00000000-0000-0000-0000-000000000000';
begin
    perform {{s}}.check_caller(p_owner, v_now);
    loop
        v_seen := 0;
        for c in
            select since, id from (
                select ready_at as since, id from {{s}}.instances
                where host_type = p_host_type and lock_owner is null and ready_at is not null
                  and ready_at <= v_now and state = 2 and not suspended
                union all
                select coalesce(o.lease_expires_at, 0) as since, i.id
                from {{s}}.instances i left join {{s}}.owners o on o.id = i.lock_owner
                where i.lock_owner is not null and i.host_type = p_host_type
                  and i.state = 2 and not i.suspended
                  and (o.id is null or o.lease_expires_at <= v_now)
            ) candidates
            where (since, id) > (v_after_since, v_after_id)
            order by since, id
            limit v_page
        loop
            v_seen := v_seen + 1;
            v_after_since := c.since;
            v_after_id := c.id;
            continue when c.id = any(p_skip);
            -- Re-checked under the row lock: another claimer may have taken it meanwhile.
            select * into r from {{s}}.instances i
            where i.id = c.id and i.host_type = p_host_type and i.state = 2 and not i.suspended
              and ((i.lock_owner is null and i.ready_at <= v_now)
                   or (i.lock_owner is not null and i.lock_owner <> p_owner
                       and not {{s}}.alive(i.lock_owner, v_now)))
            for update skip locked;
            continue when not found;
            continue when p_reject_suspended and r.suspended;
            select md5(data) = data_md5 and data_encoding in (1, 2) into v_intact
            from {{s}}.instance_data where id = r.id;
            if v_intact is not true then
                -- One bad row never blocks the others: out of the runnable set.
                raise warning 'instore: runnable instance % cannot be loaded; removing it from the runnable set', r.id;
                update {{s}}.instances set ready_at = null, lock_owner = null, locked_since = null
                where id = r.id;
                continue;
            end if;
            r := {{s}}.acquire(p_owner, r.id, r, v_now);
            return {{s}}.snapshot_of(r.id, true, true);
        end loop;
        if v_seen < v_page then
            return null;
        end if;
    end loop;
end
$$;

-- Delete (SPEC §10 rule 1): the instance and everything that belongs to it, at once. A holder
-- finds its row gone (`lock_lost` on its next command). False if there was no such instance.
create function {{s}}.delete_instance(p_id uuid) returns boolean
language plpgsql as $$
begin
    delete from {{s}}.instances where id = p_id;
    if not found then
        return false;
    end if;
    delete from {{s}}.instance_data where id = p_id;
    perform {{s}}.forget(p_id);
    -- Watchers re-ask what is runnable (what they were waiting for may be gone).
    perform pg_notify({{channel}}, '');
    return true;
end
$$;

-- Enqueue (SPEC §10 rules 2–4, 8): replaces a queued command that is neither locked nor pending,
-- at the end of the queue; removes the instance's error-log entry.
create function {{s}}.enqueue(p_now bigint, p_id uuid, p_command smallint, p_reason text)
returns void
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    v_state smallint;
    q {{s}}.control_queue;
begin
    -- Key-share: a concurrent delete waits for this call (and then removes what it queued).
    select state into v_state from {{s}}.instances where id = p_id for key share;
    if not found then
        perform {{s}}.fail('instance_not_found', jsonb_build_object('instance', p_id));
    elsif v_state = 3 then
        perform {{s}}.fail('instance_complete', jsonb_build_object('instance', p_id));
    end if;
    loop
        select * into q from {{s}}.control_queue where instance = p_id for update;
        if found then
            if q.lock_id is not null and q.locked_until > v_now then
                perform {{s}}.fail('command_locked', jsonb_build_object('instance', p_id));
            elsif q.attempts > 0 or q.lock_id is not null then
                perform {{s}}.fail('command_pending',
                    jsonb_build_object('instance', p_id, 'attempts', q.attempts));
            end if;
            update {{s}}.control_queue set position = nextval('{{s}}.control_position'),
                command = p_command, reason = p_reason, enqueued_at = v_now, attempts = 0,
                lock_id = null, locked_until = null, reader = null, last_error = null
            where instance = p_id;
            exit;
        end if;
        insert into {{s}}.control_queue (instance, position, command, reason, enqueued_at)
        values (p_id, nextval('{{s}}.control_position'), p_command, p_reason, v_now)
        on conflict (instance) do nothing;
        exit when found;
        -- A concurrent enqueue inserted first: judge its row.
    end loop;
    delete from {{s}}.error_log where instance = p_id;
end
$$;

-- Gives a command up: out of the queue, into the error log.
create function {{s}}.give_up(q {{s}}.control_queue, p_code text, p_message text, p_now bigint,
                              p_machine text, p_attempts int) returns void
language plpgsql as $$
begin
    delete from {{s}}.control_queue where instance = q.instance;
    insert into {{s}}.error_log (instance, command, reason, code, message, last_attempt_at,
                                 machine, attempts)
    values (q.instance, q.command, q.reason, p_code, p_message, p_now, p_machine, p_attempts)
    on conflict (instance) do update set command = excluded.command, reason = excluded.reason,
        code = excluded.code, message = excluded.message,
        last_attempt_at = excluded.last_attempt_at, machine = excluded.machine,
        attempts = excluded.attempts;
end
$$;

-- Read (SPEC §10 rule 5): up to `p_batch` commands, oldest first, not locked by a live reader
-- lock, skipping rows another reader is taking right now; each locked for `p_lock_time`. An
-- expired lock counts a failed attempt first, and at the last allowed one the command is given
-- up instead of returned (error log: the machine of the reader whose lock expired). Each row carries what the handover bag is built from.
create function {{s}}.read_batch(p_now bigint, p_batch int, p_lock_time bigint,
                                 p_max_attempts int, p_machine text, p_lock_time_text text)
returns table (instance uuid, command smallint, reason text, attempts int, enqueued_at bigint,
               lock_id uuid, locked_until bigint, metadata jsonb, host_type text, owner uuid,
               owner_machine text, owner_metadata bytea, owner_metadata_encoding smallint)
language plpgsql as $$
#variable_conflict use_column
declare
    v_now bigint := {{s}}.now_us(p_now);
    q {{s}}.control_queue;
    v_taken int := 0;
    v_seen int;
    v_after bigint := -1;
    v_lock uuid;
begin
    loop
        v_seen := 0;
        for q in
            select * from {{s}}.control_queue c
            where c.position > v_after and (c.lock_id is null or c.locked_until <= v_now)
            order by c.position
            limit p_batch - v_taken
            for update skip locked
        loop
            v_seen := v_seen + 1;
            v_after := q.position;
            if q.lock_id is not null then
                -- The last reader's lock expired: a failed attempt.
                q.attempts := q.attempts + 1;
                q.last_error := 'lock expired';
                if q.attempts >= p_max_attempts then
                    perform {{s}}.give_up(q, 'lock_expired',
                        'the reader on ' || coalesce(q.reader, '')
                            || ' did not report within the lock time (' || p_lock_time_text || ')',
                        v_now, coalesce(q.reader, ''), q.attempts);
                    continue;
                end if;
            end if;
            v_lock := gen_random_uuid();
            update {{s}}.control_queue c set attempts = q.attempts, last_error = q.last_error,
                lock_id = v_lock, locked_until = v_now + p_lock_time, reader = p_machine
            where c.instance = q.instance;
            v_taken := v_taken + 1;
            return query
            select q.instance, q.command, q.reason, q.attempts, q.enqueued_at, v_lock,
                   v_now + p_lock_time, d.metadata, i.host_type, o.id, o.machine, o.metadata,
                   o.metadata_encoding
            from {{s}}.instances i
            join {{s}}.instance_data d on d.id = i.id
            left join {{s}}.owners o on o.id = i.lock_owner and o.lease_expires_at > v_now
            where i.id = q.instance;
        end loop;
        exit when v_taken >= p_batch or v_seen = 0;
    end loop;
end
$$;

-- Complete (SPEC §10 rule 7): the command read with `p_lock` is done.
create function {{s}}.complete_command(p_id uuid, p_lock uuid) returns void
language plpgsql as $$
begin
    delete from {{s}}.control_queue where instance = p_id and lock_id = p_lock;
    if not found then
        perform {{s}}.fail('command_lock_lost', jsonb_build_object('instance', p_id));
    end if;
end
$$;

-- Abandon (SPEC §10 rules 7, 8): the command read with `p_lock` failed; retried (unlocked at
-- once, keeping its place) or, at the last allowed attempt, given up.
create function {{s}}.abandon_command(p_now bigint, p_id uuid, p_lock uuid, p_code text,
                                      p_message text, p_machine text, p_max_attempts int)
returns void
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    q {{s}}.control_queue;
begin
    select * into q from {{s}}.control_queue where instance = p_id and lock_id = p_lock for update;
    if not found then
        perform {{s}}.fail('command_lock_lost', jsonb_build_object('instance', p_id));
    end if;
    if q.attempts + 1 >= p_max_attempts then
        perform {{s}}.give_up(q, p_code, p_message, v_now, p_machine, q.attempts + 1);
        return;
    end if;
    update {{s}}.control_queue set attempts = attempts + 1, last_error = p_message, lock_id = null,
        locked_until = null, reader = null
    where instance = p_id;
end
$$;

-- Retention (SPEC §12): up to `p_limit` completed instances changed before `p_before`, the
-- oldest first, with everything that belongs to them; rows others hold are left for later.
create function {{s}}.purge_completed(p_before bigint, p_limit int) returns bigint
language plpgsql as $$
declare
    v_ids uuid[];
begin
    select coalesce(array_agg(id), '{}') into v_ids from (
        select id from {{s}}.instances
        where state = 3 and updated_at < p_before
        order by updated_at, id
        limit p_limit
        for update skip locked
    ) victims;
    delete from {{s}}.instances where id = any(v_ids);
    delete from {{s}}.instance_data where id = any(v_ids);
    delete from {{s}}.keys where instance = any(v_ids);
    delete from {{s}}.promoted where instance = any(v_ids);
    delete from {{s}}.control_queue where instance = any(v_ids);
    delete from {{s}}.error_log where instance = any(v_ids);
    return coalesce(array_length(v_ids, 1), 0);
end
$$;
