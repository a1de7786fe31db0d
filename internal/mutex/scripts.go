package mutex

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed acquire.lua
	acquireSrc string
	//go:embed release.lua
	releaseSrc string
	//go:embed extend.lua
	extendSrc string
	//go:embed leave.lua
	leaveSrc string
	//go:embed raise.lua
	raiseSrc string
	//go:embed unclaim.lua
	unclaimSrc string

	acquireScript = redis.NewScript(acquireSrc)
	releaseScript = redis.NewScript(releaseSrc)
	extendScript  = redis.NewScript(extendSrc)
	leaveScript   = redis.NewScript(leaveSrc)
	raiseScript   = redis.NewScript(raiseSrc)
	unclaimScript = redis.NewScript(unclaimSrc)
)
