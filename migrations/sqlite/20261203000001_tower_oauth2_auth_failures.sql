-- Nothing to do on SQLite: PostgreSQL's migration of the same version adds the table of
-- failed authentications that instances share (`oauth2_auth_failures`). SqliteStore does not
-- share failure counts (each process counts its own), and keeps its version numbers in step
-- with PostgresStore's.
SELECT 1;
