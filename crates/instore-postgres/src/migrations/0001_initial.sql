-- instore on PostgreSQL, schema version 1.
--
-- `{{s}}` is the store's schema (quoted), `{{channel}}` its LISTEN/NOTIFY channel. Every command
-- of the provider is one call of one function below: the checks and writes of an operation run
-- on the server, in the call's own transaction, so a command costs one round trip. A function
-- that finds a rule broken raises (SQLSTATE class IS, message = the error's name, detail = its
-- fields as JSON) and the whole call rolls back: nothing half-done is ever committed.
--
-- Times are microseconds since the Unix epoch (bigint), judged by the server's clock
-- (`{{s}}.now_us`); tests pass a pinned instant instead (`p_now`).

-- Owners: one row per registration of a host, with its lease.
create table {{s}}.owners (
    id uuid primary key,
    host_type text,
    metadata bytea not null,
    metadata_encoding smallint not null,
    machine text not null,
    created_at bigint not null,
    lease_expires_at bigint not null
);
create index owners_lease on {{s}}.owners (lease_expires_at);
create index owners_host_type on {{s}}.owners (host_type, lease_expires_at);

-- Instances, the scheduling columns every claim touches (narrow rows; blobs live apart).
-- state: 1 uninitialized, 2 initialized, 3 completed.
-- status: 1 executing, 2 idle, 3 closed, 4 faulted, 5 canceled, 6 terminated.
-- ready_at: while unlocked, since when it is runnable (unlock time if executing, else its timer).
create table {{s}}.instances (
    id uuid primary key,
    state smallint not null,
    lock_owner uuid,
    last_lock_owner uuid,
    lock_version bigint not null,
    status smallint not null,
    timer bigint,
    ready_at bigint,
    suspended boolean not null default false,
    suspension_reason text,
    exception_name text,
    exception_message text,
    host_type text,
    bookmarks text[] not null default '{}',
    created_at bigint not null,
    updated_at bigint not null
);
create index instances_ready on {{s}}.instances (host_type, ready_at)
    where lock_owner is null and ready_at is not null;
create index instances_locked on {{s}}.instances (lock_owner) where lock_owner is not null;

-- The blobs of an instance. `data` is the client-encoded bag (postcard, maybe zstd) with the md5
-- of its bytes, so the server can tell a damaged blob before it hands it out or writes beside it.
-- `metadata` maps each name to [options, logical length, hex of the entry's encoding]: the server
-- applies change bags and enforces the size limit without decoding values.
create table {{s}}.instance_data (
    id uuid primary key,
    data bytea not null,
    data_encoding smallint not null,
    data_len bigint not null,
    data_md5 text not null,
    metadata jsonb not null
);

-- Keys: state 1 associated, 2 completed. Freed keys are deleted.
create table {{s}}.keys (
    id uuid primary key,
    instance uuid not null,
    state smallint not null,
    metadata bytea not null,
    metadata_encoding smallint not null
);
create index keys_instance on {{s}}.keys (instance);

-- What a command answers about an instance.
create type {{s}}.snapshot as (
    id uuid,
    state smallint,
    lock_version bigint,
    locked boolean,
    data bytea,
    data_encoding smallint,
    metadata jsonb,
    key_ids uuid[],
    key_states smallint[],
    key_metadata bytea[],
    key_metadata_encodings smallint[],
    status smallint,
    timer bigint,
    bookmarks text[],
    suspended boolean,
    suspension_reason text,
    exception_name text,
    exception_message text,
    host_type text
);

-- Helpers are PL/pgSQL, not SQL: PL/pgSQL caches its plans per session, while a SQL function
-- that cannot be inlined is parsed and planned again on every call (measured: that was half of a
-- save's server CPU).

create function {{s}}.now_us(p_now bigint) returns bigint
language plpgsql volatile as $$
begin
    return coalesce(p_now, (extract(epoch from clock_timestamp()) * 1000000)::bigint);
end
$$;

create function {{s}}.fail(p_error text, p_detail jsonb) returns void
language plpgsql as $$
begin
    raise exception using errcode = 'IS001', message = p_error, detail = p_detail::text;
end
$$;

create function {{s}}.alive(p_owner uuid, p_now bigint) returns boolean
language plpgsql stable as $$
declare
    v_lease bigint;
begin
    select lease_expires_at into v_lease from {{s}}.owners where id = p_owner;
    return coalesce(v_lease > p_now, false);
end
$$;

-- The logical size of a metadata bag: postcard's length prefix plus every entry.
create function {{s}}.bag_len(p_bag jsonb) returns bigint
language plpgsql immutable as $$
declare
    n bigint;
    total bigint;
begin
    select count(*), coalesce(sum((v->>1)::bigint), 0) into n, total
    from jsonb_each(p_bag) as e(k, v);
    return (case when n < 128 then 1 when n < 16384 then 2 when n < 2097152 then 3 else 4 end)
           + total;
end
$$;

-- The optional entry to drop first when a bag does not fit: the largest, ties broken by the
-- greater name (as `instore::encoding::encode_within` does).
create function {{s}}.largest_optional(p_bag jsonb) returns text
language plpgsql immutable as $$
declare
    v_name text;
begin
    select k into v_name from jsonb_each(p_bag) as e(k, v)
    where ((v->>0)::int & 2) <> 0
    order by (v->>1)::bigint desc, k collate "C" desc
    limit 1;
    return v_name;
end
$$;

create function {{s}}.check_caller(p_owner uuid, p_now bigint) returns void
language plpgsql as $$
begin
    if not {{s}}.alive(p_owner, p_now) then
        perform {{s}}.fail('owner_lost', jsonb_build_object('owner', p_owner));
    end if;
end
$$;

-- The caller's row at `p_version` (locked for update), or `lock_lost`.
create function {{s}}.check_held(p_owner uuid, p_id uuid, p_version bigint, p_now bigint)
returns {{s}}.instances
language plpgsql as $$
declare
    r {{s}}.instances;
begin
    select * into r from {{s}}.instances where id = p_id for update;
    if not found or r.lock_owner is distinct from p_owner or r.lock_version <> p_version
       or not {{s}}.alive(p_owner, p_now) then
        perform {{s}}.fail('lock_lost', jsonb_build_object('instance', p_id));
    end if;
    return r;
end
$$;

-- Whether `p_owner` may take the lock of `r` (SPEC §5); raises if not.
create function {{s}}.can_acquire(p_owner uuid, r {{s}}.instances, p_busy uuid[], p_now bigint)
returns void
language plpgsql as $$
declare
    o {{s}}.owners;
begin
    if r.id is null then
        return;
    end if;
    if r.state = 3 then
        perform {{s}}.fail('instance_complete', jsonb_build_object('instance', r.id));
    end if;
    if r.lock_owner = p_owner and r.id = any(p_busy) then
        perform {{s}}.fail('handle_conflict', jsonb_build_object('instance', r.id));
    end if;
    if r.lock_owner is not null and r.lock_owner <> p_owner then
        select * into o from {{s}}.owners where id = r.lock_owner;
        if found and o.lease_expires_at > p_now then
            perform {{s}}.fail('instance_locked', jsonb_build_object(
                'instance', r.id, 'owner', o.id,
                'metadata', encode(o.metadata, 'hex'), 'encoding', o.metadata_encoding));
        end if;
    end if;
end
$$;

-- Raises `corrupt` unless the instance's data blob is intact.
create function {{s}}.check_intact(p_id uuid) returns void
language plpgsql as $$
declare
    ok boolean;
begin
    select md5(data) = data_md5 and data_encoding in (1, 2) into ok
    from {{s}}.instance_data where id = p_id;
    if ok is not true then
        perform {{s}}.fail('corrupt', jsonb_build_object('instance', p_id,
            'what', 'the data blob does not match its checksum (or has an unknown encoding)'));
    end if;
end
$$;

-- Takes the lock of the existing row `r` (after can_acquire), or of a new uninitialized instance.
create function {{s}}.acquire(p_owner uuid, p_id uuid, r {{s}}.instances, p_now bigint)
returns {{s}}.instances
language plpgsql as $$
declare
    v_host_type text;
    out {{s}}.instances;
begin
    select host_type into v_host_type from {{s}}.owners where id = p_owner;
    if r.id is null then
        insert into {{s}}.instances (id, state, lock_owner, last_lock_owner, lock_version, status,
                                     host_type, created_at, updated_at)
        values (p_id, 1, p_owner, p_owner, 1, 2, v_host_type, p_now, p_now)
        returning * into out;
        insert into {{s}}.instance_data (id, data, data_encoding, data_len, data_md5, metadata)
        values (p_id, '\x00'::bytea, 1, 1, md5('\x00'::bytea), '{}'::jsonb);
        return out;
    end if;
    update {{s}}.instances set
        lock_version = lock_version
            + case when last_lock_owner is distinct from p_owner then 1 else 0 end,
        lock_owner = p_owner,
        last_lock_owner = p_owner,
        ready_at = null,
        host_type = coalesce(v_host_type, host_type),
        updated_at = p_now
    where id = p_id
    returning * into out;
    return out;
end
$$;

-- The row, locked for update, creating nothing.
create function {{s}}.locked_row(p_id uuid) returns {{s}}.instances
language plpgsql as $$
declare
    r {{s}}.instances;
begin
    select * into r from {{s}}.instances where id = p_id for update;
    return r;
end
$$;

-- When `r` is released at `p_now`: since when it is runnable, or null.
create function {{s}}.ready_at(r {{s}}.instances, p_now bigint) returns bigint
language sql immutable as $$
    select case
        when r.state <> 2 or r.suspended then null
        when r.status = 1 then p_now
        else r.timer
    end
$$;

create function {{s}}.snapshot_of(p_id uuid, p_locked boolean, p_with_data boolean)
returns {{s}}.snapshot
language plpgsql stable as $$
declare
    out {{s}}.snapshot;
begin
    select i.id, i.state, i.lock_version, p_locked,
           case when p_with_data then d.data end, d.data_encoding, d.metadata,
           '{}', '{}', '{}', '{}',
           i.status, i.timer, i.bookmarks, i.suspended, i.suspension_reason, i.exception_name,
           i.exception_message, i.host_type
    into out
    from {{s}}.instances i
    join {{s}}.instance_data d on d.id = i.id
    where i.id = p_id;
    select coalesce(array_agg(id order by id), '{}'), coalesce(array_agg(state order by id), '{}'),
           coalesce(array_agg(metadata order by id), '{}'),
           coalesce(array_agg(metadata_encoding order by id), '{}')
    into out.key_ids, out.key_states, out.key_metadata, out.key_metadata_encodings
    from {{s}}.keys where instance = p_id;
    return out;
end
$$;

-- Raises `instance_suspended` if the guard asks and the instance is suspended.
create function {{s}}.check_guards(r {{s}}.instances, p_reject_suspended boolean) returns void
language plpgsql as $$
begin
    if p_reject_suspended and r.suspended then
        perform {{s}}.fail('instance_suspended',
            jsonb_build_object('instance', r.id, 'reason', r.suspension_reason));
    end if;
end
$$;

-- Inserts keys for `p_id` (but `p_except`); raises `instance_key_collision` on a key that exists (also one being
-- inserted by a concurrent transaction: `on conflict` waits for it).
create function {{s}}.associate(p_id uuid, p_keys uuid[], p_metadata bytea[],
                                p_encodings smallint[], p_except uuid) returns void
language plpgsql as $$
declare
    i int;
    v_other uuid;
begin
    for i in 1 .. coalesce(array_length(p_keys, 1), 0) loop
        continue when p_keys[i] = p_except;
        loop
            insert into {{s}}.keys (id, instance, state, metadata, metadata_encoding)
            values (p_keys[i], p_id, 1, p_metadata[i], p_encodings[i])
            on conflict (id) do nothing;
            exit when found;
            select instance into v_other from {{s}}.keys where id = p_keys[i];
            -- Gone again (freed meanwhile): try the insert once more.
            if v_other is not null then
                perform {{s}}.fail('instance_key_collision',
                    jsonb_build_object('key', p_keys[i], 'instance', v_other));
            end if;
        end loop;
    end loop;
end
$$;

-- Load (SPEC §6.2, §6.3). p_key null: by id. Returns the snapshot with the lock held.
create function {{s}}.load(
    p_now bigint, p_owner uuid, p_held bigint, p_id uuid, p_key uuid, p_accept boolean,
    p_keys uuid[], p_key_metadata bytea[], p_key_encodings smallint[], p_busy uuid[],
    p_reject_suspended boolean
) returns {{s}}.snapshot
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    r {{s}}.instances;
    k {{s}}.keys;
    v_id uuid;
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
            insert into {{s}}.instances (id, state, lock_owner, last_lock_owner, lock_version,
                                         status, host_type, created_at, updated_at)
            values (p_id, 1, p_owner, p_owner, 1, 2,
                    (select host_type from {{s}}.owners where id = p_owner), v_now, v_now)
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

-- Save (SPEC §6.4). Metadata changes arrive flattened: names to delete, then entries to set.
-- `p_metadata` (not null) replaces the merged metadata: the client resolved the size limit
-- itself (`p_metadata_base` = md5 of the metadata it merged into, checked). Returns the snapshot;
-- its data only when the save brought none (the client has what it sent).
create function {{s}}.save(
    p_now bigint, p_owner uuid, p_id uuid, p_held bigint, p_busy uuid[],
    p_has_data boolean, p_data bytea, p_data_encoding smallint, p_data_len bigint,
    p_data_droppable boolean,
    p_meta_delete text[], p_meta_set jsonb, p_metadata jsonb, p_metadata_base text,
    p_assoc uuid[], p_assoc_metadata bytea[], p_assoc_encodings smallint[],
    p_complete_keys uuid[], p_free_keys uuid[],
    p_timer bigint, p_status smallint, p_bookmarks text[],
    p_suspend smallint, p_reason text, p_exception_name text, p_exception_message text,
    p_complete boolean, p_unlock boolean, p_limit bigint, p_delete_all boolean
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

    -- Scheduling columns.
    update {{s}}.instances set
        updated_at = v_now,
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
        update {{s}}.instances set lock_owner = null, ready_at = {{s}}.ready_at(r, v_now)
        where id = p_id
        returning * into r;
        v_runnable := r.ready_at is not null;
    end if;

    v_snapshot := {{s}}.snapshot_of(p_id, not p_unlock, not p_has_data);
    if p_complete and p_delete_all then
        delete from {{s}}.keys where instance = p_id;
        delete from {{s}}.instance_data where id = p_id;
        delete from {{s}}.instances where id = p_id;
    end if;
    if v_runnable then
        perform pg_notify({{channel}}, '');
    end if;
    return v_snapshot;
end
$$;

-- Releases the caller's lock if it still holds it (any version).
create function {{s}}.unlock(p_now bigint, p_owner uuid, p_id uuid) returns void
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    r {{s}}.instances;
begin
    select * into r from {{s}}.instances where id = p_id and lock_owner = p_owner for update;
    if not found then
        return;
    end if;
    update {{s}}.instances set lock_owner = null, ready_at = {{s}}.ready_at(r, v_now),
        updated_at = v_now
    where id = p_id
    returning * into r;
    if r.ready_at is not null then
        perform pg_notify({{channel}}, '');
    end if;
end
$$;

-- TryLoadRunnable (SPEC §6.5, §8): the instance runnable longest, skipping rows others are
-- claiming right now (SKIP LOCKED) and taking damaged rows out of the runnable set. Candidates
-- come in pages ordered by (since, id); a page used up by skipped rows leads to the next one.
-- Runnable: unlocked and ready, or locked by an owner whose lease ended or who no longer exists
-- (runnable since the epoch), as on every provider.
create function {{s}}.try_load_runnable(
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
                update {{s}}.instances set ready_at = null, lock_owner = null where id = r.id;
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

-- When the next instance of a host type becomes runnable (reads only).
create function {{s}}.next_runnable(p_host_type text) returns bigint
language plpgsql stable as $$
declare
    v_next bigint;
begin
    select min(t) into v_next from (
        select min(ready_at) as t from {{s}}.instances
        where host_type = p_host_type and lock_owner is null and ready_at is not null
          and state = 2 and not suspended
        union all
        select min(coalesce(o.lease_expires_at, 0)) from {{s}}.instances i
        left join {{s}}.owners o on o.id = i.lock_owner
        where i.host_type = p_host_type and i.lock_owner is not null and i.state = 2
          and not i.suspended
    ) t;
    return v_next;
end
$$;

-- Host types with runnable instances and no owner of that type whose lease is alive.
create function {{s}}.activatable(p_now bigint) returns table (host_type text, runnable bigint)
language plpgsql stable as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
begin
    return query
    select r.host_type, count(*)::bigint from (
        select i.host_type from {{s}}.instances i
        where i.lock_owner is null and i.ready_at is not null and i.ready_at <= v_now
          and i.state = 2 and not i.suspended and i.host_type is not null
        union all
        select i.host_type from {{s}}.instances i left join {{s}}.owners o on o.id = i.lock_owner
        where i.lock_owner is not null and (o.id is null or o.lease_expires_at <= v_now)
          and i.state = 2 and not i.suspended and i.host_type is not null
    ) r
    where not exists (select 1 from {{s}}.owners w
                      where w.host_type = r.host_type and w.lease_expires_at > v_now)
    group by r.host_type
    order by r.host_type;
end
$$;

-- Owners whose lease ended and who hold no lock are gone for good. Rows another transaction
-- holds are left for a later clean-up (SKIP LOCKED): concurrent clean-ups deleting the same rows
-- in different orders would otherwise deadlock.
create function {{s}}.clean_up_owners(p_now bigint) returns void
language plpgsql as $$
begin
    delete from {{s}}.owners where id in (
        select o.id from {{s}}.owners o
        where o.lease_expires_at <= p_now
          and not exists (select 1 from {{s}}.instances i where i.lock_owner = o.id)
        for update skip locked
    );
end
$$;

create function {{s}}.create_owner(
    p_now bigint, p_id uuid, p_host_type text, p_metadata bytea, p_encoding smallint,
    p_machine text, p_lease bigint
) returns bigint
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
begin
    perform {{s}}.clean_up_owners(v_now);
    insert into {{s}}.owners (id, host_type, metadata, metadata_encoding, machine, created_at,
                              lease_expires_at)
    values (p_id, p_host_type, p_metadata, p_encoding, p_machine, v_now, v_now + p_lease);
    return v_now;
end
$$;

-- Renews a lease that has not ended: the new end, -1 if it had ended, null if no such owner.
create function {{s}}.renew_lease(p_now bigint, p_owner uuid, p_lease bigint) returns bigint
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
    v_lease bigint;
begin
    select lease_expires_at into v_lease from {{s}}.owners where id = p_owner for update;
    if not found then
        return null;
    elsif v_lease <= v_now then
        return -1;
    end if;
    update {{s}}.owners set lease_expires_at = v_now + p_lease where id = p_owner;
    return v_now + p_lease;
end
$$;

create function {{s}}.delete_owner(p_now bigint, p_owner uuid) returns void
language plpgsql as $$
declare
    v_now bigint := {{s}}.now_us(p_now);
begin
    update {{s}}.owners set lease_expires_at = least(lease_expires_at, v_now) where id = p_owner;
    if exists (select 1 from {{s}}.instances where lock_owner = p_owner) then
        perform pg_notify({{channel}}, '');
    end if;
    perform {{s}}.clean_up_owners(v_now);
end
$$;
