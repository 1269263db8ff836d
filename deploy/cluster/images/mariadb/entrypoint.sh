#!/bin/bash
# First start on an empty data directory: mariadb-install-db, then (on a
# socket-only temporary server) root@'%' and root@localhost get
# $MARIADB_ROOT_PASSWORD. Later starts keep the data and the password set then.
# Runs mariadbd in the foreground; it switches to the mysql user itself.
set -euo pipefail
datadir=/var/lib/mysql
: "${MARIADB_ROOT_PASSWORD:?set MARIADB_ROOT_PASSWORD}"

if [[ $(id -u) == 0 ]]; then
  install -d -o mysql -g mysql /run/mysqld
  chown mysql:mysql "$datadir"
fi

if [[ ! -d $datadir/mysql ]]; then
  echo "[entrypoint] initializing $datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
    --auth-root-authentication-method=socket >/dev/null
  sock=/run/mysqld/init.sock
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$sock" &
  pid=$!
  for _ in $(seq 300); do
    mysqladmin --socket="$sock" -uroot ping >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "[entrypoint] mariadbd died during initialization" >&2; exit 1; }
    sleep 0.1
  done
  pw=${MARIADB_ROOT_PASSWORD//\\/\\\\}
  pw=${pw//\'/\\\'}
  mariadb --socket="$sock" -uroot <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('$pw');
CREATE USER 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
SQL
  mysqladmin --socket="$sock" -uroot shutdown
  wait "$pid" || true
  echo "[entrypoint] initialized; root may connect from the network"
fi

exec mariadbd --user=mysql --datadir="$datadir" "$@"
