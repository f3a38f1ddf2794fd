-- One database per service (each service owns its state; none reads another's).
-- Run once by the postgres image on an empty data volume (compose.yaml mounts it in
-- /docker-entrypoint-initdb.d); on a managed PostgreSQL run it yourself as the owner.
CREATE DATABASE inventory OWNER aifactory;
CREATE DATABASE scheduling OWNER aifactory;
CREATE DATABASE health OWNER aifactory;
CREATE DATABASE keys OWNER aifactory;
CREATE DATABASE billing OWNER aifactory;
