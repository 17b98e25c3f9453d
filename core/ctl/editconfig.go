package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// stdinFile is the file name that means standard input in --apply and
// --replace.
const stdinFile = "-"

type editConfigOptions struct {
	quiet   bool
	set     []string
	pg      []string
	apply   string
	replace string
	force   bool
}

func newEditConfigCommand(e *env, g *globalOptions) *cobra.Command {
	o := &editConfigOptions{}
	cmd := &cobra.Command{
		Use:   "edit-config [CLUSTER]",
		Short: "Change the cluster's dynamic configuration",
		Long: `Change the dynamic configuration (the DCS's /config key), as patronictl
edit-config does: with -s, -p, --apply or --replace, or else in $EDITOR on its
YAML. The change is shown as a diff, checked (a wrong type, a value below
Patroni's minimum or loop_wait + 2*retry_timeout > ttl is refused with the key
and the reason), confirmed unless --force, and written to the DCS only if
/config has not changed since it was read. A null value deletes a key.`,
		Example: `  custosctl -c custos.toml edit-config -s loop_wait=5 -p max_connections=200 --force
  custosctl -c custos.toml edit-config -s synchronous_mode=null --force
  custosctl -c custos.toml edit-config --apply changes.yaml
  cat full.yaml | custosctl -c custos.toml edit-config --replace - --force`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openSession(e, g)
			if err != nil {
				return err
			}
			defer s.Close()
			s.ask.forceHint = forceHint
			scope, err := s.clusterName(args)
			if err != nil {
				return err
			}
			return s.editConfig(cmd.Context(), scope, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "do not show the changes")
	f.StringArrayVarP(&o.set, "set", "s", nil, "set a value: `key.path=YAML` (repeatable; null deletes the key)")
	f.StringArrayVarP(&o.pg, "pg", "p", nil, "set a PostgreSQL parameter: `name=value`, short for -s postgresql.parameters.name=value (repeatable)")
	f.StringVar(&o.apply, "apply", "", "merge the YAML of this `file` into the configuration (- for stdin)")
	f.StringVar(&o.replace, "replace", "", "replace the configuration with the YAML of this `file` (- for stdin)")
	f.BoolVar(&o.force, "force", false, "do not ask for confirmation (needed when the changes come from stdin)")
	return cmd
}

func (s *session) editConfig(ctx context.Context, scope string, o *editConfigOptions) error {
	c, err := s.read(ctx, scope)
	if err != nil {
		return err
	}
	if c.Config == nil {
		return fmt.Errorf("The config key does not exist in the cluster %s", scope)
	}
	current, err := configValue(c)
	if err != nil {
		return err
	}
	before := pyYAML(current)

	changed, after, edited := current, "", false
	if o.replace != "" {
		if changed, err = s.applyYAMLFile(map[string]any{}, o.replace); err != nil {
			return err
		}
		after, edited = pyYAML(changed), true
	}
	if o.apply != "" {
		if changed, err = s.applyYAMLFile(changed, o.apply); err != nil {
			return err
		}
		after, edited = pyYAML(changed), true
	}
	if len(o.set)+len(o.pg) > 0 {
		pairs := append([]string(nil), o.set...)
		for _, p := range o.pg {
			pairs = append(pairs, "postgresql.parameters."+strings.TrimLeft(p, " \t"))
		}
		if changed, err = applyPairs(changed, pairs); err != nil {
			return err
		}
		after, edited = pyYAML(changed), true
	}
	if !edited {
		if after, changed, err = s.invokeEditor(ctx, before, scope); err != nil {
			return err
		}
	}

	out := s.e.stdout
	if sameValue(current, changed) {
		if !o.quiet {
			fmt.Fprintln(out, "Not changed")
		}
		return nil
	}
	if !o.quiet {
		fmt.Fprint(out, unifiedDiff(before, after))
	}
	data, err := json.Marshal(changed)
	if err != nil {
		return fmt.Errorf("encoding the configuration: %w", err)
	}
	if _, problems := config.ParseDynamic(data); len(problems) > 0 {
		lines := make([]string, len(problems))
		for i, p := range problems {
			lines[i] = p.String()
		}
		return fmt.Errorf("the new configuration is invalid, nothing was changed:\n  %s", strings.Join(lines, "\n  "))
	}
	if (o.apply == stdinFile || o.replace == stdinFile) && !o.force {
		fmt.Fprintln(out, "Use --force option to apply changes")
		return nil
	}
	if !o.force {
		ok, err := s.ask.confirm("Apply these changes?")
		if err != nil || !ok {
			return err
		}
	}
	b, err := s.backend(ctx, scope)
	if err != nil {
		return err
	}
	wctx, cancel := s.writeContext(ctx)
	defer cancel()
	if _, err := b.CompareAndSet(wctx, dcs.KeyConfig, data, c.Config.Version); err != nil {
		if errors.Is(err, dcs.ErrVersionMismatch) || errors.Is(err, dcs.ErrNotFound) || errors.Is(err, dcs.ErrExists) {
			return errors.New("Config modification aborted due to concurrent changes")
		}
		return fmt.Errorf("writing /config of cluster %s: %w", scope, err)
	}
	fmt.Fprintln(out, "Configuration changed")
	return nil
}

// configValue decodes /config as a JSON object; an absent key is empty.
func configValue(c *cluster.Cluster) (map[string]any, error) {
	if c.Config == nil {
		return map[string]any{}, nil
	}
	v, err := config.DecodeJSON(c.Config.Data)
	if err != nil {
		return nil, fmt.Errorf("/config is not valid JSON: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("/config is not a JSON object: %s", bytes.TrimSpace(c.Config.Data))
	}
	return m, nil
}

// applyYAMLFile merges the YAML mapping in the file (or stdin) into cfg,
// Patroni's patch_config: null deletes, mappings merge, anything else
// replaces.
func (s *session) applyYAMLFile(cfg map[string]any, name string) (map[string]any, error) {
	var text []byte
	var err error
	if name == stdinFile {
		text, err = io.ReadAll(s.ask.in)
	} else {
		text, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	v, err := decodeYAMLValue(text)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	patch, ok := v.(map[string]any)
	if !ok && v != nil {
		return nil, fmt.Errorf("reading %s: the YAML is not a mapping", name)
	}
	out := deepCopy(cfg).(map[string]any)
	patchConfig(out, patch)
	return out, nil
}

// applyPairs applies key.path=YAML settings, patronictl's way: each
// dotted key names a nested key (created as needed); under
// postgresql.parameters the rest of the path is one parameter name (GUCs
// may contain dots); a null value deletes the key, and mappings left empty
// go too.
func applyPairs(cfg map[string]any, pairs []string) (map[string]any, error) {
	out := deepCopy(cfg).(map[string]any)
	for _, pair := range pairs {
		key, text, ok := strings.Cut(pair, "=")
		if pair == "" || !ok {
			return nil, fmt.Errorf("Invalid parameter setting %s", pair)
		}
		value, err := decodeYAMLValue([]byte(text))
		if err != nil {
			return nil, fmt.Errorf("Invalid parameter setting %s: %w", pair, err)
		}
		setPath(out, strings.Split(strings.TrimSpace(key), "."), value, nil)
	}
	return out, nil
}

func setPath(m map[string]any, path []string, value any, prefix []string) {
	if len(prefix) == 2 && prefix[0] == "postgresql" && prefix[1] == "parameters" {
		path = []string{strings.Join(path, ".")}
	}
	key := path[0]
	if len(path) == 1 {
		if value == nil {
			delete(m, key)
		} else {
			m[key] = value
		}
		return
	}
	sub, ok := m[key].(map[string]any)
	if !ok {
		sub = map[string]any{}
		m[key] = sub
	}
	setPath(sub, path[1:], value, append(prefix, key))
	if len(sub) == 0 {
		delete(m, key)
	}
}

// patchConfig merges patch into cfg as Patroni's patch_config: a null
// deletes the key, a mapping merges into a mapping, anything else
// replaces. Nulls inside a new mapping are dropped with it.
func patchConfig(cfg, patch map[string]any) {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(cfg, k)
		case map[string]any:
			if cur, ok := cfg[k].(map[string]any); ok {
				patchConfig(cur, pv)
				continue
			}
			fresh := map[string]any{}
			patchConfig(fresh, pv)
			cfg[k] = fresh
		default:
			cfg[k] = v
		}
	}
}

// invokeEditor lets the operator edit the YAML in $EDITOR (else editor or
// vi from PATH) and returns the edited text and its value.
func (s *session) invokeEditor(ctx context.Context, before, scope string) (string, map[string]any, error) {
	editor, _ := s.e.lookupEnv("EDITOR")
	args := strings.Fields(editor)
	if len(args) == 0 {
		for _, name := range []string{"editor", "vi"} {
			if path, err := exec.LookPath(name); err == nil {
				args = []string{path}
				break
			}
		}
	}
	if len(args) == 0 {
		return "", nil, errors.New("EDITOR environment variable is not set. editor or vi are not available")
	}
	f, err := os.CreateTemp("", scope+"-config-*.yaml")
	if err != nil {
		return "", nil, fmt.Errorf("creating the file to edit: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(before); err != nil {
		_ = f.Close()
		return "", nil, fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return "", nil, fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	cmd := exec.CommandContext(ctx, args[0], append(args[1:], f.Name())...)
	cmd.Stdout, cmd.Stderr = s.e.stdout, s.e.stderr
	if s.ask.file != nil {
		// The editor talks to the terminal; answers piped to custosctl
		// stay for its own questions.
		cmd.Stdin = s.ask.file
	}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", nil, fmt.Errorf("Editor exited with return code %d", ee.ExitCode())
		}
		return "", nil, fmt.Errorf("running the editor %s: %w", args[0], err)
	}
	text, err := os.ReadFile(f.Name())
	if err != nil {
		return "", nil, fmt.Errorf("reading the edited file: %w", err)
	}
	v, err := decodeYAMLValue(text)
	if err != nil {
		return "", nil, fmt.Errorf("the edited configuration: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		if v != nil {
			return "", nil, errors.New("the edited configuration is not a YAML mapping")
		}
		m = map[string]any{}
	}
	return string(text), m, nil
}

func newShowConfigCommand(e *env, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show-config [CLUSTER]",
		Short: "Show the cluster's dynamic configuration",
		Long: `Show the dynamic configuration (the DCS's /config key) as YAML, as patronictl
show-config does.`,
		Example: `  custosctl -c custos.toml show-config`,
		Args:    cobra.MaximumNArgs(1),
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
			c, err := s.read(cmd.Context(), scope)
			if err != nil {
				return err
			}
			v, err := configValue(c)
			if err != nil {
				return err
			}
			// patronictl echoes the YAML with a newline of its own.
			_, err = fmt.Fprintln(s.e.stdout, pyYAML(v))
			return err
		},
	}
}
