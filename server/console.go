package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/outbox"
)

//go:embed assets
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "assets/console.html"))

// sessionCookie names the console's session cookie.
const sessionCookie = "n8i_session"

// session is a console login. It keeps no copy of the token's name,
// scopes or workflows: every request looks the token up by its id in the
// current token set (Tokens.Lookup), so a removed token ends its
// sessions at once and a change applies at once.
type session struct {
	token   string // Principal.ID
	csrf    string
	expires time.Time
}

// visit is one console request of a session: the token as it is now.
type visit struct {
	p    *Principal
	csrf string
}

func (s *Server) consoleRoutes() {
	static, _ := fs.Sub(assets, "assets")
	s.mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /console/login", func(w http.ResponseWriter, r *http.Request) { s.render(w, "login", map[string]any{}) })
	s.mux.HandleFunc("POST /console/login", s.login)
	s.mux.Handle("POST /console/logout", s.console(ScopeRead, true, s.logout))
	s.mux.Handle("GET /console/{$}", s.console(ScopeRead, false, s.overview))
	s.mux.Handle("GET /console/invocations", s.console(ScopeRead, false, s.invocationsPage))
	s.mux.Handle("GET /console/dead-letters", s.console(ScopeRead, false, s.deadLettersPage))
	s.mux.Handle("GET /console/dead-letters/{id}", s.console(ScopeRead, false, s.deadLetterPage))
	s.mux.Handle("POST /console/dead-letters/{id}/replay", s.console(ScopeReplay, true, s.consoleReplay))
	s.mux.Handle("POST /console/dead-letters/{id}/purge", s.console(ScopeReplay, true, s.consolePurge))
}

func (s *Server) render(w http.ResponseWriter, name string, data map[string]any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("server: rendering the console", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// login exchanges an API token (with the read scope) for a session: an
// HttpOnly, SameSite=Strict cookie; the token itself is not kept.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	p, ok := s.o.Tokens.Authenticate(strings.TrimSpace(r.PostFormValue("token")))
	if !ok || !p.Can(ScopeRead) {
		w.WriteHeader(http.StatusUnauthorized)
		s.render(w, "login", map[string]any{"Flash": "That token is not valid for the console (it needs the read scope)."})
		return
	}
	id := randomID()
	s.mu.Lock()
	now := time.Now()
	for k, v := range s.sessions {
		if now.After(v.expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[id] = &session{token: p.ID, csrf: randomID(), expires: now.Add(DefaultSessionTTL)}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/console/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.o.SecureCookies || r.TLS != nil, MaxAge: int(DefaultSessionTTL.Seconds())})
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ *visit) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// sameOrigin refuses what a browser marks cross-site, and an Origin
// that is not this host.
func sameOrigin(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	switch site {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o == "null" && site != "same-origin" {
		return false // an opaque origin the browser does not vouch for
	} else if o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// console runs h for a logged-in session whose token (as the token set
// says now) has scope; a state-changing request (write) must also be
// same-origin and carry the session's CSRF token. A session whose token
// is gone ends.
func (s *Server) console(scope string, write bool, h func(http.ResponseWriter, *http.Request, *visit)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		var sess *session
		if err == nil {
			s.mu.Lock()
			sess = s.sessions[c.Value]
			if sess != nil && time.Now().After(sess.expires) {
				delete(s.sessions, c.Value)
				sess = nil
			}
			s.mu.Unlock()
		}
		var p *Principal
		if sess != nil {
			var ok bool
			if p, ok = s.o.Tokens.Lookup(sess.token); !ok {
				s.endSessions(sess.token)
				s.log.Info("server: console sessions ended: their token is no longer in the token set")
				sess = nil
			}
		}
		if sess == nil {
			if write {
				http.Error(w, "log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/console/login", http.StatusSeeOther)
			return
		}
		if write && (!sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) != 1) {
			http.Error(w, "cross-site request refused (the form's token does not match the session)", http.StatusForbidden)
			return
		}
		for _, sc := range []string{ScopeRead, scope} { // the console needs read, as its login does
			if !p.Can(sc) {
				http.Error(w, fmt.Sprintf("token %q lacks the %q scope", p.Name, sc), http.StatusForbidden)
				return
			}
		}
		h(w, r, &visit{p: p, csrf: sess.csrf})
	})
}

// endSessions ends every session of the token whose id is token.
func (s *Server) endSessions(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.sessions {
		if v.token == token {
			delete(s.sessions, k)
		}
	}
}

// consoleMayAct answers a 403 when v's token may not act on workflow (a
// 503 when that cannot be told now); false when it answered.
func (s *Server) consoleMayAct(w http.ResponseWriter, r *http.Request, v *visit, workflow string) bool {
	ok, err := s.allowed(r.Context(), v.p, workflow)
	switch {
	case err != nil:
		http.Error(w, err.Error()+"; try again", http.StatusServiceUnavailable)
		return false
	case !ok:
		s.log.Info("server: workflow not allowed", "token", v.p.Name, "workflow", workflow, "path", r.URL.Path)
		http.Error(w, fmt.Sprintf("token %q may not act on workflow %q (not in its workflow list)", v.p.Name, workflow), http.StatusForbidden)
		return false
	}
	return true
}

func (s *Server) page(v *visit, page, title string, r *http.Request) map[string]any {
	d := map[string]any{"Page": page, "Title": title, "Who": v.p.Name, "CSRF": v.csrf}
	if f := r.URL.Query().Get("flash"); f != "" {
		d["Flash"] = f
		d["FlashErr"] = r.URL.Query().Get("err") == "1"
	}
	return d
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, v *visit) {
	d := s.page(v, "overview", "Overview", r)
	list, err := s.o.Queue.List(r.Context(), outbox.Filter{Limit: 5000})
	if err != nil {
		d["Flash"], d["FlashErr"] = "The store did not answer: "+err.Error(), true
	}
	list = visible(r.Context(), s, v.p, list, invocationWorkflow, len(list))
	chart, total := chartSVG(list, time.Now())
	d["Chart"], d["Total"] = chart, total
	d["Invocations"] = list[:min(len(list), 20)]
	type breaker struct{ Endpoint, State string }
	var bs []breaker
	for _, b := range s.o.Manager.BreakerStates() {
		bs = append(bs, breaker{b.Endpoint, b.State.String()})
	}
	d["Breakers"] = bs
	s.render(w, "overview", d)
}

// chartSVG draws invocations per minute over the hour before now, each
// bar split by outcome, as inline SVG (no script, no outside asset).
func chartSVG(list []*outbox.Invocation, now time.Time) (template.HTML, int) {
	const minutes, bw, h = 60, 14, 120
	var ok, bad, open [minutes]int
	total, peak := 0, 1
	for _, inv := range list {
		at := inv.UpdatedAt
		age := int(now.Sub(at) / time.Minute)
		if age < 0 || age >= minutes {
			continue
		}
		i := minutes - 1 - age
		switch inv.Status {
		case outbox.Succeeded:
			ok[i]++
		case outbox.Failed, outbox.DeadLettered:
			bad[i]++
		default:
			open[i]++
		}
		total++
	}
	for i := range minutes {
		peak = max(peak, ok[i]+bad[i]+open[i])
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="invocations per minute">`, minutes*bw+40, h+20)
	fmt.Fprintf(&b, `<text x="0" y="10" font-size="10" fill="#6b7487">%d/min</text><text x="0" y="%d" font-size="10" fill="#6b7487">0</text>`, peak, h)
	for i := range minutes {
		x, y := 40+i*bw, h
		for _, part := range []struct {
			n    int
			fill string
		}{{ok[i], "#3aa55d"}, {bad[i], "#d0453a"}, {open[i], "#e3b12b"}} {
			if part.n == 0 {
				continue
			}
			ph := part.n * (h - 10) / peak
			if ph == 0 {
				ph = 1
			}
			y -= ph
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%d</title></rect>`, x, y, bw-2, ph, part.fill, part.n)
		}
	}
	fmt.Fprintf(&b, `<text x="40" y="%d" font-size="10" fill="#6b7487">-60 min</text><text x="%d" y="%d" font-size="10" fill="#6b7487">now</text></svg>`, h+14, minutes*bw+10, h+14)
	return template.HTML(b.String()), total // #nosec: built from numbers only
}

func (s *Server) invocationsPage(w http.ResponseWriter, r *http.Request, v *visit) {
	d := s.page(v, "invocations", "Invocations", r)
	q := r.URL.Query()
	d["Statuses"] = outbox.Statuses
	d["Status"], d["Workflow"] = q.Get("status"), q.Get("workflow")
	list, err := s.o.Queue.List(r.Context(), outbox.Filter{Status: q.Get("status"), Workflow: q.Get("workflow"), Limit: listLimit(v.p, 200)})
	if err != nil {
		d["Flash"], d["FlashErr"] = err.Error(), true
	}
	d["Invocations"] = visible(r.Context(), s, v.p, list, invocationWorkflow, 200)
	s.render(w, "invocations", d)
}

func (s *Server) deadLettersPage(w http.ResponseWriter, r *http.Request, v *visit) {
	d := s.page(v, "dead-letters", "Dead letters", r)
	d["Classes"] = []string{"transient", "permanent", "unknown"}
	f, err := deadLetterFilter(r)
	d["Workflow"], d["Class"] = f.Workflow, f.Class
	if err != nil {
		d["Flash"], d["FlashErr"] = err.Error(), true
		s.render(w, "deadletters", d)
		return
	}
	if st := s.o.Manager.DLQ(); st != nil {
		limit := f.Limit
		f.Limit = listLimit(v.p, limit)
		list, err := st.List(r.Context(), f)
		if err != nil {
			d["Flash"], d["FlashErr"] = err.Error(), true
		}
		d["Entries"] = visible(r.Context(), s, v.p, list, entryWorkflow, limit)
	} else {
		d["Flash"] = "The dead-letter queue is off (dlq.enabled)."
	}
	s.render(w, "deadletters", d)
}

func (s *Server) deadLetterPage(w http.ResponseWriter, r *http.Request, v *visit) {
	st := s.o.Manager.DLQ()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if st == nil || err != nil {
		http.NotFound(w, r)
		return
	}
	e, err := st.Get(r.Context(), id)
	if errors.Is(err, dlq.ErrNotFound) {
		http.Redirect(w, r, "/console/dead-letters?flash="+url.QueryEscape(fmt.Sprintf("Dead letter %d is gone (replayed or purged).", id)), http.StatusSeeOther)
		return
	}
	if err != nil {
		http.Error(w, "the store did not answer", http.StatusServiceUnavailable)
		return
	}
	if !s.consoleMayAct(w, r, v, e.Workflow) {
		return
	}
	d := s.page(v, "dead-letters", fmt.Sprintf("Dead letter %d", id), r)
	dl := s.deadLetter(r.Context(), e)
	d["Entry"], d["ExecutionURL"] = e, dl.ExecutionURL
	var pretty bytes.Buffer
	if json.Indent(&pretty, e.Params, "", "  ") == nil {
		d["Params"] = pretty.String()
	} else {
		d["Params"] = string(e.Params)
	}
	s.render(w, "deadletter", d)
}

func (s *Server) consoleReplay(w http.ResponseWriter, r *http.Request, v *visit) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if !s.consoleEntryAllowed(w, r, v, id) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.MaxAwait)
	defer cancel()
	rep, err := s.replay(ctx, id, r.PostFormValue("run_again") == "1")
	msg, bad := "", false
	switch {
	case err != nil:
		msg, bad = "Replay failed: "+err.Error(), true
	case rep.Succeeded+rep.AlreadyDone == 1:
		msg = fmt.Sprintf("Dead letter %d replayed: it succeeded and left the queue.", id)
		if rep.AlreadyDone == 1 {
			msg = fmt.Sprintf("Dead letter %d had already run in n8n: removed without running it again.", id)
		}
	case rep.Skipped == 1:
		msg, bad = fmt.Sprintf("Dead letter %d was not replayed: %s", id, rep.Results[0].Skipped), true
	default:
		msg, bad = fmt.Sprintf("Dead letter %d failed again: %s", id, rep.Results[0].Error), true
	}
	s.log.Info("server: console replay", "id", id, "by", v.p.Name, "outcome", msg)
	target := "/console/dead-letters?flash=" + url.QueryEscape(msg)
	if bad {
		target = fmt.Sprintf("/console/dead-letters/%d?err=1&flash=%s", id, url.QueryEscape(msg))
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (s *Server) consolePurge(w http.ResponseWriter, r *http.Request, v *visit) {
	st := s.o.Manager.DLQ()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if st == nil || err != nil {
		http.NotFound(w, r)
		return
	}
	if !s.consoleEntryAllowed(w, r, v, id) {
		return
	}
	msg := fmt.Sprintf("Dead letter %d purged.", id)
	if err := st.Delete(r.Context(), id); err != nil {
		msg = "Purge failed: " + err.Error()
	}
	s.log.Info("server: console purge", "id", id, "by", v.p.Name)
	http.Redirect(w, r, "/console/dead-letters?flash="+url.QueryEscape(msg), http.StatusSeeOther)
}

// consoleEntryAllowed answers a 403 when the dead letter id belongs to a
// workflow outside v's token's list; false when it answered. An entry
// that is gone is left to the action to report.
func (s *Server) consoleEntryAllowed(w http.ResponseWriter, r *http.Request, v *visit, id int64) bool {
	st := s.o.Manager.DLQ()
	if v.p.allWorkflows() || st == nil {
		return true
	}
	e, err := st.Get(r.Context(), id)
	switch {
	case errors.Is(err, dlq.ErrNotFound):
		return true
	case err != nil:
		http.Error(w, "the store did not answer", http.StatusServiceUnavailable)
		return false
	}
	return s.consoleMayAct(w, r, v, e.Workflow)
}
