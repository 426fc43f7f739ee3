-- What the database must offer before anything is created. Tokens, JSON claims and emails are
-- UTF-8, and the extension reads SQL text as UTF-8: in a database of another encoding
-- (SQL_ASCII, LATIN1, …) a byte sequence that is not UTF-8 could reach it, so such databases
-- are refused here, clearly, instead of failing later.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'auth_ext needs a UTF8 database; this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the database with ENCODING ''UTF8'' (e.g. CREATE DATABASE … ENCODING ''UTF8'' TEMPLATE template0).';
    END IF;
END $$;
