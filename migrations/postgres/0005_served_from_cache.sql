-- Files a deployment serves from the download cache (kernels, initrds
-- fetched from a URL) are not copied into the database: the row names the
-- cached file, and `content` stays empty.
ALTER TABLE served_files ADD COLUMN file_path TEXT;
