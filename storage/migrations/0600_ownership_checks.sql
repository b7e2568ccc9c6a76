-- Ownership is checked, not declared (issue 18, item 9). A citizen's enrolment is a claim
-- (status 'pending') until an operator has checked the car's registration certificate
-- (자동차등록증): then it becomes 'active', or 'refused'. Only active cars take part, receive
-- consents and are matched to providers' readings, so whoever enrols a VIN first controls nothing,
-- and several members may claim the same VIN without learning of one another. The unique indexes
-- on active plates and VINs now mean "one verified owner per car".
--
-- Cars enrolled before this migration stay active with ownership_checked_at null (never checked);
-- an operator may record a check for them later.

alter table vehicles drop constraint vehicles_status_check;
alter table vehicles add constraint vehicles_status_check
    check (status in ('pending', 'active', 'retired', 'refused'));

alter table vehicles
    -- who checked the registration certificate, when, and its document number
    add column ownership_checked_by  text,
    add column ownership_checked_at  timestamptz,
    add column registration_certificate_no text,
    -- why a claim (or an earlier verification) was refused
    add column ownership_refusal     text check (ownership_refusal in
        ('not_registered_owner', 'document_invalid', 'vehicle_mismatch', 'other')),
    add column ownership_note        text;

alter table vehicles add constraint vehicles_refusal_has_reason
    check ((status = 'refused') = (ownership_refusal is not null));
alter table vehicles add constraint vehicles_check_recorded
    check ((ownership_checked_at is null) = (ownership_checked_by is null));

-- A member claims a car once at a time; claims of one VIN are found for the operator.
create unique index vehicles_pending_claim on vehicles (owner_id, vin) where status = 'pending';
create index vehicles_pending_vin on vehicles (vin) where status = 'pending';
create index vehicles_pending_created on vehicles (created_at) where status = 'pending';

-- A participation of a car whose verification was withdrawn ends for that reason.
alter table participations drop constraint participations_end_reason_check;
alter table participations add constraint participations_end_reason_check
    check (end_reason in ('ownership_transfer', 'moved_out_of_seoul', 'scrapped', 'withdrawn',
                          'ownership_refused'));
