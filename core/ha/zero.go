package ha

import "time"

var timeZero time.Time
