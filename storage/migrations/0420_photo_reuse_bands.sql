-- Reuse lookups without reading every photo. The 64-bit perceptual hash is cut into four 16-bit
-- bands: two hashes at most d bits apart differ in at most floor(d / 4) bits in at least one band
-- (pigeonhole), so every photo within d bits has a band equal to one of the values within
-- floor(d / 4) bits of ours. Those few values are looked up through these indexes, and the exact
-- distance is computed for what they find only (storage/photos.py, reuse_matches).
alter table photos
    add column phash_band0 integer generated always as ((phash_bits >> 48) & 65535) stored,
    add column phash_band1 integer generated always as ((phash_bits >> 32) & 65535) stored,
    add column phash_band2 integer generated always as ((phash_bits >> 16) & 65535) stored,
    add column phash_band3 integer generated always as (phash_bits & 65535) stored;
create index photos_phash_band0 on photos (phash_band0) where phash_band0 is not null;
create index photos_phash_band1 on photos (phash_band1) where phash_band1 is not null;
create index photos_phash_band2 on photos (phash_band2) where phash_band2 is not null;
create index photos_phash_band3 on photos (phash_band3) where phash_band3 is not null;
-- only ever used for equality, which the bands now serve
drop index photos_phash_bits;
