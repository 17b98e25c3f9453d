package controller

import "github.com/custos-ha/custos/core/config"

// parseConfig reads /config over the dynamic configuration in effect and
// returns the problems to publish; logged when the value is new.
func (c *Controller) parseConfig(data []byte, changed bool) (config.Dynamic, []string) {
	dyn, problems := config.ParseDynamicOver(data, c.dyn)
	if len(problems) == 0 {
		return dyn, nil
	}
	if changed {
		c.logger.Warn("rejected values in /config; the values in effect stay for them", "problems", problems.Error())
	}
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = "/config: " + p.String()
	}
	return dyn, out
}
