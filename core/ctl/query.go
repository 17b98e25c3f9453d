package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/custos-ha/custos/core/cluster"
)

const (
	// queryConnectTimeout is patronictl's connect_timeout.
	queryConnectTimeout = 5 * time.Second
	// queryApplicationName names custosctl's sessions in
	// pg_stat_activity unless PGAPPNAME says otherwise.
	queryApplicationName = "custosctl"
)

// PostgreSQL type OIDs query turns into JSON-like values.
const (
	oidBool = 16
	oidInt8 = 20
	oidInt2 = 21
	oidInt4 = 23
	oidOID  = 26
)

type queryOptions struct {
	role, member  string
	command, file string
	username      string
	password      bool
	dbname        string
	format        string
	delimiter     string
	watchDefault  bool
	watch         float64
}

func newQueryCommand(e *env, g *globalOptions) *cobra.Command {
	o := &queryOptions{}
	cmd := &cobra.Command{
		Use:   "query [CLUSTER]",
		Short: "Run SQL on a member",
		Long: `Run SQL on a member, as patronictl query does: on the leader by default, on the
first member with a role (-r) or on a named member (-m), connecting straight to
the host and port the member publishes. Connection settings not given here come
from the usual PG* environment variables (PGUSER, PGPASSWORD, PGPASSFILE...).

After the command name, -c is --command and -d is --dbname, as with patronictl
(before it they are the global -c/--config-file and -d/--dcs-url).`,
		Example: `  custosctl -c custos.toml query -c "SELECT pg_is_in_recovery()" -U postgres
  custosctl -c custos.toml query -r replica -f check.sql --format pretty`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openSession(e, g)
			if err != nil {
				return err
			}
			defer s.Close()
			scope, err := s.clusterName(args)
			if err != nil {
				return err
			}
			return s.query(cmd.Context(), scope, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.role, "role", "r", "", "run on the first member with this role: "+roleHelp+" (default leader)")
	f.StringVarP(&o.member, "member", "m", "", "run on this member")
	f.StringVar(&o.command, "command", "", "the SQL to run (-c after the command name)")
	f.StringVarP(&o.file, "file", "f", "", "run the SQL in this `file` (- for stdin)")
	f.StringVarP(&o.username, "username", "U", "", "database user name")
	f.BoolVar(&o.password, "password", false, "ask for the password")
	f.StringVar(&o.dbname, "dbname", "", "database name to connect to (-d after the command name)")
	f.StringVar(&o.format, "format", formatTSV, "output format: pretty, tsv, json or yaml")
	f.StringVar(&o.delimiter, "delimiter", "\t", "the column delimiter of tsv")
	f.BoolVarP(&o.watchDefault, "watch-default", "W", false, "run again every 2 seconds until interrupted")
	f.Float64VarP(&o.watch, "watch", "w", 0, "run again every `SECONDS` until interrupted")
	return cmd
}

// queryShorthands are query's own -c and -d, patronictl's, which custosctl
// rewrites to their long names when they come after the command name:
// before it, -c and -d are the global options.
var queryShorthands = map[string]string{"-c": "--command", "-d": "--dbname"}

// rewriteQueryArgs rewrites query's -c and -d after the command name.
func rewriteQueryArgs(args []string) []string {
	i := commandIndex(args)
	if i < 0 || args[i] != "query" {
		return args
	}
	out := append([]string(nil), args[:i+1]...)
	for j := i + 1; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			out = append(out, args[j:]...)
			break
		}
		if long, ok := queryShorthands[a]; ok {
			a = long
		} else if len(a) > 2 {
			if long, ok := queryShorthands[a[:2]]; ok {
				a = long + "=" + strings.TrimPrefix(a[2:], "=")
			}
		}
		out = append(out, a)
	}
	return out
}

// globalValueFlags are the global options that take a value.
var globalValueFlags = map[string]bool{"-c": true, "--config-file": true, "-d": true, "--dcs-url": true, "--plugin-dir": true}

// commandIndex is the index of the command name in args: the first
// argument that is neither an option nor an option's value; -1 if none.
func commandIndex(args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return -1
		case globalValueFlags[a]:
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return i
		}
	}
	return -1
}

func (s *session) query(ctx context.Context, scope string, o *queryOptions) error {
	role, err := memberOrRole(o.role, o.member)
	if err != nil {
		return err
	}
	if err := checkFormat(o.format); err != nil {
		return err
	}
	if o.file != "" && o.command != "" {
		return errors.New("--file and --command are mutually exclusive options")
	}
	if o.file == "" && o.command == "" {
		return errors.New("You need to specify either --command or --file")
	}
	if o.watch < 0 {
		return usageError{fmt.Errorf("--watch %v: give a positive number of seconds", o.watch)}
	}
	conn := connParams{user: o.username, dbname: o.dbname}
	if o.password {
		if conn.password, err = s.ask.password("Password"); err != nil {
			return err
		}
		conn.hasPassword = true
	}
	sql := o.command
	if o.file != "" {
		var text []byte
		if o.file == stdinFile {
			text, err = io.ReadAll(s.ask.in)
		} else {
			text, err = os.ReadFile(o.file)
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", o.file, err)
		}
		sql = string(text)
	}

	interval := (&listOptions{watch: o.watch, watchDefault: o.watchDefault}).interval()
	q := &memberQuery{s: s, scope: scope, role: role, member: o.member, params: conn}
	defer q.close()
	failed := false
	for {
		columns, rows, ok := q.run(ctx, sql)
		if !ok {
			failed = true
			if err := writeMessage(s.e.stdout, rows, o.delimiter); err != nil {
				return err
			}
		} else if err := writeRows(s.e.stdout, o.format, columns, rows, nil, o.delimiter); err != nil {
			return err
		}
		if interval == 0 {
			break
		}
		if err := sleep(ctx, interval); err != nil {
			return nil
		}
	}
	if failed {
		return silentError{"query failed"}
	}
	return nil
}

// memberOrRole is the role -r and -m select: -m picks among all members,
// neither means the leader.
func memberOrRole(role, member string) (string, error) {
	if err := checkRole(role); err != nil {
		return "", err
	}
	if member != "" {
		if role != "" {
			return "", errors.New("--role and --member are mutually exclusive options")
		}
		return roleAny, nil
	}
	if role == "" {
		return roleLeader, nil
	}
	return role, nil
}

// pickMember is the member -r/-m select, nil when none.
func pickMember(c *cluster.Cluster, role, name string) *cluster.Member {
	for _, m := range membersWithRole(c, role) {
		if name == "" || m.Name == name {
			return &m
		}
	}
	return nil
}

type connParams struct {
	user, dbname string
	password     string
	hasPassword  bool
}

// memberQuery runs SQL on the chosen member, keeping its connection
// between the runs of a watch (and dropping it after an error).
type memberQuery struct {
	s            *session
	scope        string
	role, member string
	params       connParams
	conn         *pgx.Conn
}

func (q *memberQuery) close() {
	if q.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), pluginCloseTimeout)
		defer cancel()
		_ = q.conn.Close(ctx)
		q.conn = nil
	}
}

// run runs the SQL and returns the last statement's columns and rows; on
// failure ok is false and the single row is patronictl's [time, message].
func (q *memberQuery) run(ctx context.Context, sql string) (columns []string, rows [][]any, ok bool) {
	message := func(text string) ([]string, [][]any, bool) {
		return nil, [][]any{{timestampSeconds(q.s.now()), strings.ReplaceAll(text, "\n", " ")}}, false
	}
	failure := func(err error) ([]string, [][]any, bool) {
		q.close()
		text := err.Error()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code != "" {
			text = pgErr.Code
		}
		return message("ERROR, SQLSTATE: " + text)
	}
	if q.conn == nil {
		c, err := q.s.read(ctx, q.scope)
		if err != nil {
			return failure(err)
		}
		m := pickMember(c, q.role, q.member)
		if m != nil {
			conn, err := q.connect(ctx, *m)
			if err != nil {
				return failure(err)
			}
			q.conn = conn
		}
		if q.conn == nil {
			if q.member != "" {
				return message(fmt.Sprintf("No connection to member %s is available", q.member))
			}
			return message(fmt.Sprintf("No connection to role=%s is available", q.role))
		}
	}
	results, err := q.conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return failure(err)
	}
	if len(results) == 0 || len(results[len(results)-1].FieldDescriptions) == 0 {
		return failure(errors.New("no results to fetch"))
	}
	last := results[len(results)-1]
	for _, fd := range last.FieldDescriptions {
		columns = append(columns, fd.Name)
	}
	for _, r := range last.Rows {
		row := make([]any, len(r))
		for i, cell := range r {
			row[i] = cellValue(last.FieldDescriptions[i].DataTypeOID, cell)
		}
		rows = append(rows, row)
	}
	return columns, rows, true
}

// connect opens a connection to the member, checking its role for the
// roles the leader key does not decide (primary, replica, standby,
// standby-leader), as patronictl does; nil when the role does not match.
func (q *memberQuery) connect(ctx context.Context, m cluster.Member) (*pgx.Conn, error) {
	host, port := m.HostPort()
	if host == "" {
		return nil, fmt.Errorf("member %s publishes no conn_url", m.Name)
	}
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("connection settings from the environment: %w", err)
	}
	cfg.Host, cfg.Port, cfg.Fallbacks = host, uint16(port), nil
	cfg.ConnectTimeout = queryConnectTimeout
	if q.params.user != "" {
		cfg.User = q.params.user
	}
	if q.params.hasPassword {
		cfg.Password = q.params.password
	}
	if q.params.dbname != "" {
		cfg.Database = q.params.dbname
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = queryApplicationName
	}
	// Simple protocol: several statements may run at once, and every value
	// comes back as PostgreSQL's text.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	switch q.role {
	case roleAny, roleLeader:
		return conn, nil
	}
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	replicaRole := q.role == roleReplica || q.role == roleStandby || q.role == roleStandbyLeader
	if inRecovery == replicaRole {
		return conn, nil
	}
	_ = conn.Close(ctx)
	return nil, nil
}

// cellValue turns a text value into what patronictl's cursor would hold:
// nil for NULL, booleans and integers typed, anything else as PostgreSQL
// prints it.
func cellValue(oid uint32, text []byte) any {
	if text == nil {
		return nil
	}
	s := string(text)
	switch oid {
	case oidBool:
		return s == "t"
	case oidInt2, oidInt4, oidInt8, oidOID:
		var n int64
		if _, err := fmt.Sscan(s, &n); err == nil {
			return n
		}
	}
	return s
}

// writeMessage prints query's [time, message] row, delimited as tsv
// (patronictl has no header for it in any format).
func writeMessage(w io.Writer, rows [][]any, delimiter string) error {
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = pyStrValue(v)
		}
		if _, err := fmt.Fprintln(w, strings.Join(cells, delimiter)); err != nil {
			return err
		}
	}
	return nil
}

type dsnOptions struct{ role, member string }

func newDSNCommand(e *env, g *globalOptions) *cobra.Command {
	o := &dsnOptions{}
	cmd := &cobra.Command{
		Use:   "dsn [CLUSTER]",
		Short: "Print a member's host and port as a connection string",
		Long: `Print "host=H port=P" for the leader, for the first member with a role (-r) or
for a named member (-m), as patronictl dsn does.`,
		Example: `  psql "$(custosctl -c custos.toml dsn) user=postgres"`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := memberOrRole(o.role, o.member)
			if err != nil {
				return err
			}
			s, err := openSession(e, g)
			if err != nil {
				return err
			}
			defer s.Close()
			scope, err := s.clusterName(args)
			if err != nil {
				return err
			}
			c, err := s.read(cmd.Context(), scope)
			if err != nil {
				return err
			}
			m := pickMember(c, role, o.member)
			if m == nil {
				return errors.New("Can not find a suitable member")
			}
			host, port := m.HostPort()
			if host == "" {
				return fmt.Errorf("member %s publishes no conn_url", m.Name)
			}
			_, err = fmt.Fprintf(s.e.stdout, "host=%s port=%d\n", host, port)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.role, "role", "r", "", "the first member with this role: "+roleHelp+" (default leader)")
	f.StringVarP(&o.member, "member", "m", "", "this member")
	return cmd
}
